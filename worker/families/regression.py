"""Regression on the worker: a one-output sequence-classification head trained with MSE, scored by
Pearson and Spearman correlation (STS-B's metrics)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bertq.families import regression
from bertq.worker.classification import correlations
from bertq.worker.families.classification import Classification, encode_inputs
from bertq.worker.families.family import EvalSet


class Regression(Classification):
    family = regression.FAMILY

    def head_options(self, label_names: list[str] | None) -> dict[str, Any]:
        return dict(num_labels=1, problem_type="regression", ignore_mismatched_sizes=True)

    def train_features(
        self, examples: list[tuple[Any, str]], tokenizer: Any, spec: Any, labels: list[str] | None
    ) -> dict[str, list]:
        encoded = encode_inputs(tokenizer, [t for t, _ in examples], spec.max_length)
        columns = {key: list(value) for key, value in encoded.items()}
        columns["labels"] = regression.targets([y for _, y in examples], path=spec.train, column=spec.label_column)
        return columns

    def eval_set(self, examples: list[tuple[Any, str]], tokenizer: Any, spec: Any, labels: list[str] | None) -> EvalSet:
        source = str(getattr(spec, "eval", None) or getattr(spec, "data", "the evaluation data"))
        gold = np.asarray(regression.targets([y for _, y in examples], path=source, column=spec.label_column), float)
        inputs = [t for t, _ in examples]

        def encode(batch: list[Any]) -> dict[str, list]:
            return {k: list(v) for k, v in encode_inputs(tokenizer, batch, spec.max_length).items()}

        def score(outputs: list[dict[str, np.ndarray]]) -> dict[str, float]:
            predicted = np.array([float(np.ravel(o["logits"])[0]) for o in outputs])
            return correlations(predicted, gold)

        return EvalSet(encode(inputs), len(inputs), ("logits",), score, lambda i: encode([inputs[i]]))


FAMILY = Regression()
