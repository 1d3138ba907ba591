"""Labelled text for classification, from a local file or a Hugging Face Hub dataset."""

from __future__ import annotations

from bertq import datafiles, hubdata

IGNORE_INDEX = -100
"""The label that torch's cross-entropy (and so the Trainer, seqeval scoring and the distillation loss)
skips: sub-tokens after a word's first, padding, and unlabelled transfer examples."""


def load_labelled(
    source: str, text_column: str, label_column: str, pair_column: str | None = None
) -> datafiles.LabelledData:
    """Examples from a local file or a Hub dataset's local copy, read by the same code that
    validated them at submit."""
    return datafiles.read_labelled(hubdata.local_path(source), text_column, label_column, pair_column)
