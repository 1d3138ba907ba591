"""Token classification (NER) on the worker: CoNLL sentences, a token-classification head, entity F1."""

from __future__ import annotations

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


FAMILY = Ner()
