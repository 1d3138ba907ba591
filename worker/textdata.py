"""Labelled text for classification, from a local file or a Hugging Face Hub dataset."""

from __future__ import annotations

from pathlib import Path

from bertq import datafiles

IGNORE_INDEX = -100
"""The label that torch's cross-entropy (and so the Trainer, seqeval scoring and the distillation loss)
skips: sub-tokens after a word's first, padding, and unlabelled transfer examples."""


def load_labelled(source: str, text_column: str, label_column: str) -> datafiles.LabelledData:
    """Examples from a local file (read by the same code that validated it at submit) or the Hub."""
    if not source.startswith("hub:"):
        return datafiles.read_labelled(Path(source), text_column, label_column)
    from datasets import load_dataset

    name, _, split = source.removeprefix("hub:").partition(":")
    rows = load_dataset(name, split=split or "train")
    missing = [c for c in (text_column, label_column) if c not in rows.column_names]
    if missing:
        raise datafiles.DataFileError(
            f"hub dataset {name}: no column {', '.join(missing)}; it has {', '.join(rows.column_names)}"
        )
    return datafiles.LabelledData(
        texts=[str(t) for t in rows[text_column]], labels=[str(label) for label in rows[label_column]]
    )
