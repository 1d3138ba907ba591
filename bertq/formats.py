"""File formats, written once: which format a suffix means, how CSV and TSV are read, which columns
hold the text, and whether a name is a Hub dataset (its syntax is bertq.hubdata's). Training, evaluation, bulk inference and the
submit-time checks all read these, so a file accepted by one is read the same way by the others."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from bertq.hubdata import HubData, HubDataError

FORMAT_BY_SUFFIX = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
"""Lower-case suffix → format. Families with a document format of their own (SQuAD's `.json`, CoNLL's
column files) check their suffixes first and fall back to this table."""

TEXT_COLUMN_GUESSES = ("text", "sentence", "content", "review")
"""The columns tried, in order, when no --text-column is given: by training and by bulk inference alike
(two copies once drifted, so a file could fine-tune and then fail at infer)."""


csv.field_size_limit(2**31 - 1)


def format_of(path: Path | str) -> str | None:
    """ "jsonl", "csv", "tsv" or "parquet" from the file's suffix; None for any other suffix."""
    return FORMAT_BY_SUFFIX.get(Path(path).suffix.lower())


def csv_dialect(fmt: str) -> dict[str, Any]:
    """csv.reader keywords for "csv" or "tsv". TSV files such as SST-2 contain bare quote characters:
    they are read without quoting rules."""
    if fmt == "tsv":
        return {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    return {"delimiter": ",", "quoting": csv.QUOTE_MINIMAL}


def guess_text_column(columns: list[str]) -> str | None:
    return next((c for c in TEXT_COLUMN_GUESSES if c in columns), None)


def is_hub_dataset_name(value: str, *, prefixed: bool = False) -> bool:
    """Whether `value` has the shape of a Hub dataset name (with `prefixed`, it must start with `hub:`)."""
    if prefixed and not value.startswith("hub:"):
        return False
    try:
        HubData.parse(value)
    except HubDataError:
        return False
    return True
