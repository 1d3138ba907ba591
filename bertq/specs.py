"""Job specifications: typed, documented, validated before anything is enqueued.

A builder takes what the user typed, collects *every* problem (each with its fix) into one
SpecError, and returns the resolved spec: defaults filled in, paths absolute, labels read from the
data. That resolved spec is what is stored on the job row and written beside its checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bertq import datafiles
from bertq.errors import BertqError, SpecError
from bertq.hub import HubNotFound, HubUnreachable, fetch_json
from bertq.models import resolve_model

CLASSIFICATION_TASKS = {"classification", "sst2"}
TASKS = CLASSIFICATION_TASKS


@dataclass(frozen=True)
class TaskPreset:
    text_column: str | None
    label_column: str
    label_names: dict[str, str] = field(default_factory=dict)


PRESETS: dict[str, TaskPreset] = {
    "sst2": TaskPreset("sentence", "label", {"0": "negative", "1": "positive"}),
    "classification": TaskPreset(None, "label"),
}


@dataclass(frozen=True)
class FinetuneSpec:
    model: str
    """The model as the user named it: an alias, a hub id or a folder."""
    model_location: str
    """What it resolved to: an absolute folder, or a hub id."""
    task: str
    """`classification`, or `sst2` (classification with SST-2's columns and label names)."""
    train: str
    """Training data: an absolute path to TSV/CSV/JSONL, or `hub:NAME[:SPLIT]`."""
    eval: str
    """Evaluation data, in the same forms as `train`; evaluated after every epoch."""
    text_column: str
    """Column holding the input text."""
    label_column: str
    """Column holding the class label."""
    labels: list[str]
    """The label values in class-id order (class i is labels[i])."""
    label_names: list[str]
    """Human names of the classes, in class-id order, saved in the model's config."""
    epochs: float = 3.0
    """Passes over the training data (ignored when max_steps is set)."""
    max_steps: int | None = None
    """Stop after this many optimiser steps (overrides epochs)."""
    batch_size: int = 32
    """Examples per optimiser step."""
    lr: float = 5e-5
    """Peak learning rate of AdamW with linear decay."""
    max_length: int = 128
    """Longer inputs are truncated to this many tokens; shorter ones are not padded beyond their batch."""
    seed: int = 42
    """Seed for shuffling and the new head's initialisation."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FinetuneSpec:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def build_finetune_spec(
    *,
    model: str,
    task: str,
    train: str,
    eval: str,
    text_column: str | None = None,
    label_column: str | None = None,
    epochs: float = 3.0,
    max_steps: int | None = None,
    batch_size: int = 32,
    lr: float = 5e-5,
    max_length: int = 128,
    seed: int = 42,
) -> FinetuneSpec:
    problems: list[str] = []
    if task not in TASKS:
        problems.append(f"unknown task {task!r}; choose one of: {', '.join(sorted(TASKS))}")
        raise SpecError(problems)
    preset = PRESETS[task]

    if epochs <= 0:
        problems.append(f"--epochs must be more than 0 (got {epochs})")
    if max_steps is not None and max_steps <= 0:
        problems.append(f"--max-steps must be a positive number of steps (got {max_steps})")
    if batch_size <= 0:
        problems.append(f"--batch-size must be at least 1 (got {batch_size})")
    if lr <= 0:
        problems.append(f"--lr must be more than 0 (got {lr}); 2e-5 to 1e-4 suits most fine-tunes")
    if max_length <= 0:
        problems.append(f"--max-length must be at least 1 token (got {max_length})")

    location = model
    try:
        ref = resolve_model(model)
        location = ref.location
        if ref.max_length is not None and max_length > ref.max_length:
            problems.append(
                f"--max-length {max_length} is longer than {model!r} accepts ({ref.max_length} tokens); "
                f"use --max-length {ref.max_length} or less"
            )
    except BertqError as error:
        problems.append(str(error))

    text_column = text_column or preset.text_column
    label_column = label_column or preset.label_column
    data: dict[str, datafiles.LabelledData] = {}
    resolved_paths: dict[str, str] = {}
    for role, name in (("train", train), ("eval", eval)):
        option = f"--{role}"
        if datafiles.is_hub_dataset(name):
            resolved_paths[role] = _check_hub_dataset(name, option, problems)
            continue
        path = Path(name).expanduser()
        if not path.is_file():
            problems.append(f"{option}: no file {name!r}; give a TSV, CSV or JSONL file (or hub:NAME:SPLIT)")
            continue
        resolved_paths[role] = str(path.resolve())
        try:
            if text_column is None:
                columns = datafiles.columns_of(path)
                text_column = datafiles.guess_text_column(columns)
                if text_column is None:
                    problems.append(
                        f"{option} {name}: cannot tell which column holds the text (columns: "
                        f"{', '.join(columns) or 'none'}); name it with --text-column"
                    )
                    continue
            data[role] = datafiles.read_labelled(path, text_column, label_column)
        except datafiles.DataFileError as error:
            problems.append(f"{option}: {error}")

    labels: list[str] = []
    if "train" in data:
        try:
            labels = datafiles.check_label_set(Path(train), data["train"].labels)
        except datafiles.DataFileError as error:
            problems.append(f"--train: {error}")
    if labels and "eval" in data:
        unseen = sorted(set(data["eval"].labels) - set(labels), key=datafiles.label_sort_key)
        if unseen:
            problems.append(
                f"--eval: labels {', '.join(map(repr, unseen[:5]))} never occur in --train "
                f"({', '.join(map(repr, labels[:10]))}); the model cannot predict them"
            )
    if not labels and "train" not in data and "train" in resolved_paths and not problems:
        labels = list(preset.label_names)  # hub data: labels are read by the worker

    if problems:
        raise SpecError(problems)
    return FinetuneSpec(
        model=model,
        model_location=location,
        task=task,
        train=resolved_paths["train"],
        eval=resolved_paths["eval"],
        text_column=text_column or "text",
        label_column=label_column,
        labels=labels,
        label_names=[preset.label_names.get(label, label) for label in labels],
        epochs=float(epochs),
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        max_length=max_length,
        seed=seed,
    )


def _check_hub_dataset(name: str, option: str, problems: list[str]) -> str:
    dataset = name.removeprefix("hub:").split(":", 1)[0]
    try:
        fetch_json(f"api/datasets/{dataset}")
    except HubNotFound:
        problems.append(f"{option}: no local file {name!r}, and the Hugging Face Hub has no dataset {dataset!r}")
    except HubUnreachable as error:
        problems.append(
            f"{option}: no local file {name!r}, and the Hugging Face Hub is unreachable here ({error}) to "
            f"load it as a dataset; export the split to a local TSV/CSV/JSONL file and pass its path"
        )
    return name if name.startswith("hub:") else f"hub:{name}"
