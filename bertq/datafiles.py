"""Reading and checking local data files (TSV, CSV, JSONL) with the standard library alone.

The CLI checks a file before anything is enqueued, and the worker reads it with the same code, so
what was validated is what is trained on.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bertq.errors import BertqError, did_you_mean
from bertq.formats import csv_dialect, format_of, is_hub_dataset_name

MAX_CLASSES = 100
"""More distinct labels than this is not a classification task (regression values, ids, text)."""


class DataFileError(BertqError):
    pass


@dataclass(frozen=True)
class LabelledData:
    texts: list[str]
    labels: list[str]
    pairs: list[str] | None = None
    """The second text of each example, for sentence-pair tasks (NLI, paraphrase, QNLI)."""

    def inputs(self) -> list[str] | list[tuple[str, str]]:
        """What a model reads per example: the text, or the (text, second text) pair."""
        return list(zip(self.texts, self.pairs)) if self.pairs is not None else list(self.texts)


def file_format(path: Path) -> str:
    fmt = format_of(path)
    if fmt in {"tsv", "csv", "jsonl"}:
        return fmt
    suffix = path.suffix.lower()
    raise DataFileError(
        f"{path}: unknown data format {suffix or '(no extension)'!r}; use .tsv, .csv or .jsonl "
        "(one example per line, with a header row for TSV/CSV)"
    )


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line, with a clear error for bytes that are not UTF-8."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise DataFileError(
                    f"{path}, line {number}: bytes that are not UTF-8 ({error.reason} at byte "
                    f"{error.start}); re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
                ) from error


def read_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, row as a dict) for every data row of a TSV, CSV or JSONL file."""
    fmt = file_format(path)
    lines = _decoded_lines(path)
    if fmt == "jsonl":
        for number, line in lines:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise DataFileError(f"{path}, line {number}: not valid JSON ({error})") from error
            if not isinstance(row, dict):
                raise DataFileError(f"{path}, line {number}: expected a JSON object per line")
            yield number, row
        return
    numbered = list(lines)  # decoding errors surface here, with their line number
    if not numbered:
        return
    reader = csv.reader((text for _, text in numbered), **csv_dialect(fmt))
    header = next(reader)
    for row in reader:
        number = numbered[min(reader.line_num - 1, len(numbered) - 1)][0]
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataFileError(
                f"{path}, line {number}: {len(row)} columns where the header has {len(header)} "
                f"({', '.join(header)}); fix the line or quote fields that contain the delimiter"
            )
        yield number, dict(zip(header, row))


def columns_of(path: Path) -> list[str]:
    for _, row in read_rows(path):
        return list(row)
    return []


def label_sort_key(label: str) -> tuple[int, float | str]:
    """Numeric labels in numeric order ("2" before "10"), then the rest alphabetically."""
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def read_labelled(path: Path, text_column: str, label_column: str, pair_column: str | None = None) -> LabelledData:
    """Every (text, label) pair of a file (with `pair_column`, every (text, second text, label));
    raises DataFileError naming the file and line."""
    texts: list[str] = []
    labels: list[str] = []
    pairs: list[str] | None = [] if pair_column else None
    wanted = [c for c in (text_column, pair_column, label_column) if c]
    for number, row in read_rows(path):
        missing = [c for c in wanted if c not in row]
        if missing:
            raise DataFileError(
                f"{path}, line {number}: no column {', '.join(map(repr, missing))}{did_you_mean(missing[0], list(row))}; "
                f"the file has {', '.join(map(repr, row))}. Name the right one with --text-column / "
                "--text-pair-column / --label-column"
            )
        text, label = row[text_column], row[label_column]
        if not isinstance(text, str) or not text.strip():
            raise DataFileError(f"{path}, line {number}: the text in column {text_column!r} is empty")
        if pairs is not None:
            second = row[pair_column]
            if not isinstance(second, str) or not second.strip():
                raise DataFileError(f"{path}, line {number}: the text in column {pair_column!r} is empty")
            pairs.append(second.strip())
        if label is None or (isinstance(label, str) and not label.strip()):
            raise DataFileError(f"{path}, line {number}: the label in column {label_column!r} is empty")
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise DataFileError(
                f"{path}, line {number}: label {label!r} is not a class name or a whole number; "
                "classification needs a small set of classes"
            )
        texts.append(text.strip())
        labels.append(str(label).strip())
    if not texts:
        raise DataFileError(f"{path}: no examples (the file is empty or has only a header)")
    return LabelledData(texts, labels, pairs)


def check_label_set(path: Path, labels: list[str]) -> list[str]:
    """The sorted distinct labels, or an error if they are not a small set of classes."""
    distinct = sorted(set(labels), key=label_sort_key)
    if len(distinct) > MAX_CLASSES or (len(distinct) > 20 and len(distinct) > len(labels) / 2):
        examples = ", ".join(map(repr, distinct[:5]))
        raise DataFileError(
            f"{path}: {len(distinct)} distinct labels in {len(labels)} examples ({examples}, ...): that is "
            "not a small set of classes. Check --label-column; regression targets are not supported"
        )
    if len(distinct) < 2:
        raise DataFileError(
            f"{path}: every example has the label {distinct[0]!r}; a classifier needs at least two classes"
        )
    return distinct


def is_hub_dataset(name: str) -> bool:
    """`NAME[:SPLIT]` that is not a local file is taken as a Hugging Face Hub dataset."""
    return not Path(name).suffix and is_hub_dataset_name(name) and not Path(name).exists()
