"""`Family`: one kind of task bertq trains and evaluates, described once, torch-free.

A family decides the model head, the data format, the labels and the metric. The CLI checks a
submit through it before anything is enqueued, so this module and every family module stay on the
standard library (plus bertq's own readers); the worker half lives in `bertq.worker.families`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertq.datafiles import DataFileError

LOWER_IS_BETTER = frozenset({"mse", "loss", "perplexity"})
"""Metrics where a smaller number is the better model (the best epoch, the report's ranking)."""


@dataclass(frozen=True)
class DataCheck:
    """A data file that passed its submit-time check, and what was read from it."""

    path: str
    """The absolute path, or `hub:NAME[#CONFIG]:SPLIT` for a Hub dataset (read here from its local copy)."""
    data: Any = None
    """What the family read (its examples)."""
    label_names: dict[str, str] | None = None
    """A Hub dataset's ClassLabel names of the label column: label id (as text) → name."""


@dataclass(frozen=True)
class Family:
    """Everything about a task family that the CLI needs: names, words for messages, data checks.

    Subclasses (one module each) override the data methods; the defaults suit a family whose file
    needs no column names and whose examples carry no label set."""

    name: str
    """The family's name, as stored in specs (`family` field) and given to `get_family`."""
    head_suffix: str
    """The end of a transformers architecture name with this family's head (a checkpoint's
    `architectures` entry ending so carries it)."""
    words: str
    """What users call it, for messages ("sequence classification")."""
    main_metric: str
    """What picks the best epoch and what the decision report ranks by."""
    metrics: tuple[str, ...]
    """The task metrics its evaluation reports."""
    data_kinds: str
    """The data files it reads, for the message when a file is missing."""
    has_labels: bool = True
    """Whether a model of the family predicts from a label set (classes, tags)."""
    article_split: bool = False
    """Whether `--split-by article` applies: one file split into train and eval by article title."""
    windows: bool = False
    """Whether long inputs are split into overlapping windows (`--stride` must be below `--max-length`)."""
    default_max_length: int = 128
    """The default `--max-length` of its presets."""
    named_classes: bool = False
    """Whether a trained head's class names (id2label) are matched to the data's labels (`bertq.labels`)."""
    distillable: bool = False
    """Whether `bertq submit distill` supports it (soft labels: a class vector per text, or per word)."""
    not_distillable_because: str = ""
    """Why distill refuses the family, for the message."""
    distills_transfer_text: bool = False
    """Whether `--transfer-data` (unlabelled plain text the teacher labels) applies."""

    def carries(self, config: dict[str, Any]) -> bool:
        """Whether a checkpoint whose architecture ends with `head_suffix` has this family's head (two
        families may share a head class, told apart by the config)."""
        return True

    def check_data(
        self,
        path: Path,
        *,
        name: str,
        option: str,
        problems: list[str],
        text_column: str | None,
        label_column: str,
        pair_column: str | None = None,
    ) -> tuple[Any, str | None]:
        """Read a local data file as the worker will; returns what was read (None after recording a
        problem) and the text column it uses (unchanged for families without columns)."""
        if pair_column:
            problems.append(f"--text-pair-column: {self.words} reads no text pairs; it is for classification")
            return None, text_column
        try:
            return self.read_file(path), text_column
        except DataFileError as error:
            problems.append(f"{option}: {error}")
            return None, text_column

    def read_file(self, path: Path) -> Any:
        """The file's examples; raises DataFileError naming what is wrong. Families without their own
        `check_data` implement this."""
        raise NotImplementedError(f"the {self.name} family reads no data files")

    def labels_from(self, path: Path, data: Any) -> list[str] | None:
        """The label set, in class-id order, read from checked training data; None when the family has
        none. Raises DataFileError when the labels cannot make a task."""
        return None

    def check_eval_labels(self, path: Path, data: Any, labels: list[str], option: str, problems: list[str]) -> None:
        """Record a problem when checked evaluation data uses labels the trained model cannot predict."""

    def check_split(self, data: Any, *, eval_fraction: float, seed: int) -> None:
        """Raise ValueError when checked data cannot be split as `--split-by article` asks."""
