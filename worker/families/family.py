"""`WorkerFamily`: the worker half of a task family, and `EvalSet`, what every family scores through.

Each family (one module beside this one) says how to read its examples, which transformers head to
load, how to build training features, and how to score a model's outputs. Both the fine-tune
(per-epoch evaluation) and the evaluate job score through `EvalSet`, so the numbers they report for
the same checkpoint and data are the same numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertq.families import Family


@dataclass
class EvalSet:
    """Model inputs for every example of an evaluation set, and how to score the outputs."""

    features: dict[str, list]
    """Token-id lists, one row per model input (a QA example may have several windows)."""
    num_examples: int
    outputs: tuple[str, ...]
    """The model outputs that `score` needs (logits, or start/end logits)."""
    score: Callable[[list[dict[str, np.ndarray]]], dict[str, float]]
    """Task metrics from the outputs of every row of `features`, in order."""
    example_features: Callable[[int], dict[str, list]]
    """Tokenise example i alone, as a server would for one request (used to time latency)."""


class WorkerFamily:
    """What a worker does differently per family. Subclasses set `family` and `auto_model` and
    implement the data methods; the defaults suit a family that pads whole sequences."""

    family: Family
    """The torch-free half: name, metrics, labels or not."""
    auto_model: str
    """The transformers Auto class with the family's head."""
    words_given: bool = False
    """Whether inputs come already split into words (byte-level BPE tokenizers then need
    `add_prefix_space`)."""

    @property
    def name(self) -> str:
        return self.family.name

    def model_class(self) -> Any:
        """The transformers Auto class that loads a model with this family's head."""
        import transformers

        return getattr(transformers, self.auto_model)

    def head_options(self, label_names: list[str] | None) -> dict[str, Any]:
        """`from_pretrained` options that give a model this family's head for these labels (a new head
        when the checkpoint has none, or one of another size)."""
        if label_names is None:
            return {}
        return dict(
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
            ignore_mismatched_sizes=True,
        )

    def data_collator(self, tokenizer: Any) -> Any:
        """Pads each training batch to its longest input (and, per family, its labels)."""
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def read_examples(self, source: str, *, spec: Any, side: str) -> list[Any]:
        """The examples of one side ('train' or 'eval'), applying the article split when there is one."""
        raise NotImplementedError

    def labels_for(self, examples: list[Any], spec_labels: list[str] | None) -> list[str] | None:
        """Label values in class-id order: the spec's (read at submit), else read from the examples."""
        if not self.family.has_labels:
            return None
        if spec_labels:
            return list(spec_labels)
        return self.labels_of(examples)

    def labels_of(self, examples: list[Any]) -> list[str]:
        """The label set of training examples, when the spec did not carry one (hub data)."""
        raise NotImplementedError

    def trained_labels(self, model_folder: str, config: Any) -> list[str] | None:
        """Label values in class-id order for a trained checkpoint: bertq's spec beside the weights if
        it is there, else the names in the model's config."""
        spec_file = Path(model_folder) / "bertq_spec.json"
        if spec_file.is_file():
            labels = json.loads(spec_file.read_text()).get("labels")
            if labels:
                return labels
        if not self.family.has_labels:
            return None
        return [config.id2label[i] for i in range(config.num_labels)]

    def train_dataset(self, examples: list[Any], tokenizer: Any, spec: Any, labels: list[str] | None) -> Any:
        """A `datasets.Dataset` of training features."""
        from datasets import Dataset

        return Dataset.from_dict(self.train_features(examples, tokenizer, spec, labels))

    def train_features(
        self, examples: list[Any], tokenizer: Any, spec: Any, labels: list[str] | None
    ) -> dict[str, list]:
        """Training feature columns (token ids, labels) of the examples."""
        raise NotImplementedError

    def eval_set(self, examples: list[Any], tokenizer: Any, spec: Any, labels: list[str] | None) -> EvalSet:
        """The model inputs of every evaluation example, and how to score the outputs."""
        raise NotImplementedError

    # -- distillation: the teacher's soft labels, joined to the student's examples by example id ---

    def example_id(self, example: Any) -> str:
        """A digest of what the model reads of an example (not of its token ids), so teacher and
        student may tokenize differently."""
        raise NotImplementedError(f"the {self.name} family is not distilled")

    def teacher_features(self, examples: list[Any], tokenizer: Any, spec: Any) -> Any:
        """The teacher's model inputs, one row per example (a tokenizer's BatchEncoding)."""
        raise NotImplementedError(f"the {self.name} family is not distilled")

    def soft_labels(self, examples: list[Any], features: Any, logits: list[np.ndarray]) -> list[np.ndarray]:
        """Each example's soft labels from the teacher's logits of its row: a (units, classes) array,
        one unit per class decision (the text; each word)."""
        raise NotImplementedError(f"the {self.name} family is not distilled")

    def soft_label_column(
        self, examples: list[Any], tokenizer: Any, spec: Any, soft: dict[str, np.ndarray]
    ) -> list[list[Any]]:
        """The `teacher_logits` training column, aligned with `train_features` rows: per example a
        class vector, or per token one (NaN where the token makes no decision)."""
        raise NotImplementedError(f"the {self.name} family is not distilled")
