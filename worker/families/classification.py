"""Sequence classification on the worker: labelled texts, a sequence-classification head, accuracy."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from bertq import datafiles
from bertq.errors import BertqError
from bertq.families import classification
from bertq.worker.classification import accuracy_and_f1
from bertq.worker.families.family import EvalSet, WorkerFamily
from bertq.worker.textdata import IGNORE_INDEX, load_labelled


class Classification(WorkerFamily):
    family = classification.FAMILY
    auto_model = "AutoModelForSequenceClassification"

    def read_examples(self, source: str, *, spec: Any, side: str) -> list[tuple[Any, str]]:
        """(text, label), or ((text, second text), label) for a sentence-pair task."""
        data = load_labelled(source, spec.text_column, spec.label_column, getattr(spec, "text_pair_column", None))
        return list(zip(data.inputs(), data.labels))

    def labels_of(self, examples: list[tuple[str, str]]) -> list[str]:
        return sorted({label for _, label in examples}, key=datafiles.label_sort_key)

    def train_features(
        self, examples: list[tuple[str, str]], tokenizer: Any, spec: Any, labels: list[str] | None
    ) -> dict[str, list]:
        index = {label: i for i, label in enumerate(labels or [])}
        encoded = encode_inputs(tokenizer, [t for t, _ in examples], spec.max_length)
        columns = {key: list(value) for key, value in encoded.items()}
        # A distillation's transfer text has no gold label (None): the teacher's soft labels only.
        columns["labels"] = [IGNORE_INDEX if label is None else index[label] for _, label in examples]
        return columns

    def eval_set(self, examples: list[tuple[str, str]], tokenizer: Any, spec: Any, labels: list[str] | None) -> EvalSet:
        labels = labels or []
        index = {label: i for i, label in enumerate(labels)}
        unknown = sorted({y for _, y in examples} - set(index))
        if unknown:
            raise BertqError(f"evaluation labels {unknown[:5]} are not among the model's labels {labels[:10]}")
        gold = np.array([index[y] for _, y in examples])
        texts = [t for t, _ in examples]
        # Always answering the most common label scores this accuracy: a model at that level learned nothing.
        majority = float(np.bincount(gold).max() / len(gold)) if len(gold) else 0.0

        def encode(batch: list[Any]) -> dict[str, list]:
            return {k: list(v) for k, v in encode_inputs(tokenizer, batch, spec.max_length).items()}

        def score(outputs: list[dict[str, np.ndarray]]) -> dict[str, float]:
            predicted = np.array([int(np.argmax(o["logits"])) for o in outputs])
            return {**accuracy_and_f1(predicted, gold, len(labels)), "majority_baseline": majority}

        return EvalSet(encode(texts), len(texts), ("logits",), score, lambda i: encode([texts[i]]))

    def example_id(self, example: tuple[Any, Any]) -> str:
        return hashlib.sha1(str(example[0]).encode("utf-8")).hexdigest()

    def teacher_features(self, examples: list[tuple[Any, Any]], tokenizer: Any, spec: Any) -> Any:
        return encode_inputs(tokenizer, [t for t, _ in examples], spec.max_length)

    def soft_labels(self, examples: list[Any], features: Any, logits: list[np.ndarray]) -> list[np.ndarray]:
        return [row.reshape(1, -1) for row in logits]  # one decision: the text's class

    def soft_label_column(
        self, examples: list[Any], tokenizer: Any, spec: Any, soft: dict[str, np.ndarray]
    ) -> list[list[Any]]:
        return [soft[self.example_id(example)][0].tolist() for example in examples]


def encode_inputs(tokenizer: Any, inputs: list[Any], max_length: int) -> Any:
    """Texts, or (text, second text) pairs as one input each ([CLS] a [SEP] b [SEP]); a pair too long
    loses tokens from its longer side first."""
    if inputs and isinstance(inputs[0], tuple):
        firsts, seconds = zip(*inputs)
        return tokenizer(list(firsts), list(seconds), truncation="longest_first", max_length=max_length)
    return tokenizer(inputs, truncation=True, max_length=max_length)


FAMILY = Classification()
