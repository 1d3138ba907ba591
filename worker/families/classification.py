"""Sequence classification on the worker: labelled texts, a sequence-classification head, accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np

from bertq import datafiles
from bertq.errors import BertqError
from bertq.families import classification
from bertq.worker.classification import accuracy_and_f1
from bertq.worker.families.family import EvalSet, WorkerFamily
from bertq.worker.textdata import load_labelled


class Classification(WorkerFamily):
    family = classification.FAMILY
    auto_model = "AutoModelForSequenceClassification"

    def read_examples(self, source: str, *, spec: Any, side: str) -> list[tuple[str, str]]:
        data = load_labelled(source, spec.text_column, spec.label_column)
        return list(zip(data.texts, data.labels))

    def labels_of(self, examples: list[tuple[str, str]]) -> list[str]:
        return sorted({label for _, label in examples}, key=datafiles.label_sort_key)

    def train_features(
        self, examples: list[tuple[str, str]], tokenizer: Any, spec: Any, labels: list[str] | None
    ) -> dict[str, list]:
        index = {label: i for i, label in enumerate(labels or [])}
        encoded = tokenizer([t for t, _ in examples], truncation=True, max_length=spec.max_length)
        columns = {key: list(value) for key, value in encoded.items()}
        columns["labels"] = [index[label] for _, label in examples]
        return columns

    def eval_set(self, examples: list[tuple[str, str]], tokenizer: Any, spec: Any, labels: list[str] | None) -> EvalSet:
        labels = labels or []
        index = {label: i for i, label in enumerate(labels)}
        unknown = sorted({y for _, y in examples} - set(index))
        if unknown:
            raise BertqError(f"evaluation labels {unknown[:5]} are not among the model's labels {labels[:10]}")
        gold = np.array([index[y] for _, y in examples])
        texts = [t for t, _ in examples]

        def encode(batch: list[str]) -> dict[str, list]:
            return {k: list(v) for k, v in tokenizer(batch, truncation=True, max_length=spec.max_length).items()}

        def score(outputs: list[dict[str, np.ndarray]]) -> dict[str, float]:
            predicted = np.array([int(np.argmax(o["logits"])) for o in outputs])
            return accuracy_and_f1(predicted, gold, len(labels))

        return EvalSet(encode(texts), len(texts), ("logits",), score, lambda i: encode([texts[i]]))


FAMILY = Classification()
