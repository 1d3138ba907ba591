"""Question answering on the worker: SQuAD examples in overlapping windows, a span head, SQuAD F1."""

from __future__ import annotations

from typing import Any

import numpy as np

from bertq import hubdata, squad
from bertq.families import qa as qa_family
from bertq.worker import qa
from bertq.worker.families.family import EvalSet, WorkerFamily


class Qa(WorkerFamily):
    family = qa_family.FAMILY
    auto_model = "AutoModelForQuestionAnswering"

    def read_examples(self, source: str, *, spec: Any, side: str) -> list[squad.QAExample]:
        examples = squad.read_squad(hubdata.local_path(source))
        if spec.split_by == "article":
            train, evaluation = squad.split_by_article(examples, eval_fraction=spec.eval_fraction, seed=spec.seed)
            return train if side == "train" else evaluation
        return examples

    def train_features(
        self, examples: list[squad.QAExample], tokenizer: Any, spec: Any, labels: list[str] | None
    ) -> dict[str, list]:
        return qa.prepare_train_features(examples, tokenizer, max_length=spec.max_length, stride=spec.stride)

    def eval_set(self, examples: list[squad.QAExample], tokenizer: Any, spec: Any, labels: list[str] | None) -> EvalSet:
        features = qa.prepare_eval_features(examples, tokenizer, max_length=spec.max_length, stride=spec.stride)

        def score(outputs: list[dict[str, np.ndarray]]) -> dict[str, float]:
            width = max(len(o["start_logits"]) for o in outputs)
            start = np.full((len(outputs), width), -1e9, dtype=np.float32)
            end = np.full((len(outputs), width), -1e9, dtype=np.float32)
            for row, output in enumerate(outputs):
                start[row, : len(output["start_logits"])] = output["start_logits"]
                end[row, : len(output["end_logits"])] = output["end_logits"]
            predictions = qa.postprocess_predictions(
                examples, features, start, end, max_answer_length=spec.max_answer_length
            )
            return qa.squad_metrics(predictions, examples)

        def one(i: int) -> dict[str, list]:
            return qa.prepare_eval_features([examples[i]], tokenizer, max_length=spec.max_length, stride=spec.stride)

        return EvalSet(features, len(examples), ("start_logits", "end_logits"), score, one)


FAMILY = Qa()
