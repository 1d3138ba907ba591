"""Token classification (NER) on the worker: CoNLL sentences, a token-classification head, entity F1."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from bertq import conll, hubdata
from bertq.families import ner as ner_family
from bertq.worker import ner
from bertq.worker.families.family import EvalSet, WorkerFamily


class Ner(WorkerFamily):
    family = ner_family.FAMILY
    auto_model = "AutoModelForTokenClassification"
    words_given = True

    def data_collator(self, tokenizer: Any) -> Any:
        """Pads the per-token labels with the input ids."""
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def read_examples(self, source: str, *, spec: Any, side: str) -> list[conll.NerExample]:
        return conll.read_ner(hubdata.local_path(source))

    def labels_of(self, examples: list[conll.NerExample]) -> list[str]:
        return conll.label_list(examples)

    def train_features(
        self, examples: list[conll.NerExample], tokenizer: Any, spec: Any, labels: list[str] | None
    ) -> dict[str, list]:
        label2id = {t: i for i, t in enumerate(labels or [])}
        return ner.tokenize_and_align(examples, tokenizer, label2id, max_length=spec.max_length)

    def eval_set(
        self, examples: list[conll.NerExample], tokenizer: Any, spec: Any, labels: list[str] | None
    ) -> EvalSet:
        labels = labels or []
        label2id = {t: i for i, t in enumerate(labels)}
        id2label = dict(enumerate(labels))
        features = ner.tokenize_and_align(examples, tokenizer, label2id, max_length=spec.max_length)

        def score(outputs: list[dict[str, np.ndarray]]) -> dict[str, float]:
            gold_tags: list[list[str]] = []
            predicted_tags: list[list[str]] = []
            for output, label_ids in zip(outputs, features["labels"]):
                gold, predicted = ner.logits_to_tags(output["logits"][None], np.array([label_ids]), id2label)
                gold_tags += gold
                predicted_tags += predicted
            return ner.entity_metrics(gold_tags, predicted_tags)

        def one(i: int) -> dict[str, list]:
            return ner.tokenize_and_align([examples[i]], tokenizer, label2id, max_length=spec.max_length)

        return EvalSet(features, len(examples), ("logits",), score, one)

    # Per word: the logits of each word's first sub-token, so teacher and student may split words
    # into different pieces (or vocabularies) and still be compared word by word.

    def example_id(self, example: conll.NerExample) -> str:
        return hashlib.sha1("\x1f".join(example.tokens).encode("utf-8")).hexdigest()

    def teacher_features(self, examples: list[conll.NerExample], tokenizer: Any, spec: Any) -> Any:
        return _split_words(examples, tokenizer, spec.max_length)

    def soft_labels(
        self, examples: list[conll.NerExample], features: Any, logits: list[np.ndarray]
    ) -> list[np.ndarray]:
        soft = []
        for index, (example, row) in enumerate(zip(examples, logits)):
            words = np.full((len(example.tokens), row.shape[-1]), np.nan, dtype=np.float32)  # NaN: truncated away
            for position, word in _first_pieces(features.word_ids(index)):
                words[word] = row[position]
            soft.append(words)
        return soft

    def soft_label_column(
        self, examples: list[conll.NerExample], tokenizer: Any, spec: Any, soft: dict[str, np.ndarray]
    ) -> list[list[Any]]:
        encoded = _split_words(examples, tokenizer, spec.max_length)  # as train_features tokenizes
        column = []
        for index, example in enumerate(examples):
            words = soft[self.example_id(example)]
            tokens = np.full((len(encoded["input_ids"][index]), words.shape[-1]), np.nan, dtype=np.float32)
            for position, word in _first_pieces(encoded.word_ids(index)):
                tokens[position] = words[word]
            column.append(tokens.tolist())
        return column


def _split_words(examples: list[conll.NerExample], tokenizer: Any, max_length: int) -> Any:
    return tokenizer(
        [example.tokens for example in examples], is_split_into_words=True, truncation=True, max_length=max_length
    )


def _first_pieces(word_ids: list[int | None]) -> list[tuple[int, int]]:
    """(position, word) of each word's first sub-token: where the word's tag is decided."""
    pieces, previous = [], None
    for position, word in enumerate(word_ids):
        if word is not None and word != previous:
            pieces.append((position, word))
        previous = word
    return pieces


FAMILY = Ner()
