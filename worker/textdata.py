"""Turning labelled text into tokenised datasets for the Trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertq import datafiles


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


def classification_dataset(data: datafiles.LabelledData, tokenizer: Any, labels: list[str], max_length: int) -> Any:
    """Token ids (no padding: the collator pads each batch to its longest) and class ids."""
    from datasets import Dataset

    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(data.labels) - set(index))
    if unknown:
        raise datafiles.DataFileError(f"labels {unknown[:5]} are not among the training labels {labels[:10]}")
    encoded = tokenizer(data.texts, truncation=True, max_length=max_length)
    columns = {key: list(value) for key, value in encoded.items()}
    columns["labels"] = [index[label] for label in data.labels]
    return Dataset.from_dict(columns)
