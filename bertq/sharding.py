"""Split bulk-inference inputs into shards, and stream each shard's records back.

A shard is one contiguous range of one input file: line-aligned byte offsets for the text formats
(plain text, JSONL, CSV, TSV) and a row range for Parquet. The shards of a file tile it (every byte
or row is in exactly one shard), so every input record is read by exactly one worker: that is what
lets bulk inference promise one output record per input record.

Submitting reads a sample of each input (`sample_inputs`: its size, its header or first records,
its first MiB), so bad input is refused at submit without reading a whole corpus, and a nightly
schedule fires in milliseconds whatever the corpus size. Planning (`plan_shards`) is the first step
of the job, on a worker: it reads every input twice, streaming: a first pass checks every line and
counts the records, a second pass cuts the file where the record counts say and hashes each range.
A worker reading a shard first checks that the bytes are still the ones that were planned.

What a record is:
- plain text: a line that is not empty or whitespace only (such lines still count in line numbers);
- JSONL: a non-blank line, holding a JSON object;
- CSV/TSV: a non-blank line after the header. A CSV record must fit on one line (a quoted field with
  a line break in it is refused: convert such files to JSONL); TSV is read without quoting rules;
- Parquet: a row.
In the column formats an empty text is still a record: the row exists, so it gets its output.
A bad line (bytes that are not UTF-8, JSON that does not parse, no text field, a text that is not a
string, an empty id) fails planning, or with on_bad_line="skip" is left out.

Only the standard library is imported at module level, because the CLI imports this module;
pyarrow is imported inside the Parquet functions.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import heapq
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from bertq import hubdata, store
from bertq.errors import BertqError, did_you_mean
from bertq.formats import TEXT_COLUMN_GUESSES, csv_dialect, format_of, guess_text_column

SAMPLE_BYTES = 1 << 20
"""What submit reads of each text input: its first MiB (and the first SAMPLE_ROWS rows of a Parquet file)."""
SAMPLE_ROWS = 2000
DEFAULT_RECORDS_PER_SHARD = 20_000
"""With no shard count given, shards hold about this many records."""

ON_BAD_LINE_CHOICES = ("fail", "skip")
READ_CHUNK = 1 << 20
PARQUET_BATCH_ROWS = 8192

_MISSING = object()

Text = str | tuple[str, str]
"""A record's text: one string, or (text, second text) when a pair column is read (NLI pairs, or a
context and its question for qa)."""


class InputError(BertqError):
    """The inputs of a bulk-inference job cannot be sharded as asked; the message says how to fix it."""


class InputChanged(BertqError):
    """An input file is no longer what it was when the job was planned."""


@dataclass(frozen=True)
class Shard:
    index: int
    """0-based, over all the inputs of a job."""
    path: str
    """Absolute path of the input file."""
    start: int
    """Byte offset (text formats) or first row (Parquet), inclusive."""
    end: int
    """Byte offset (text formats) or row (Parquet), exclusive."""
    first_line: int
    """1-based physical line number of the first line in the range (Parquet: 1-based row number)."""
    records: int
    """How many records the range holds (bad lines left out by on_bad_line="skip" not counted)."""
    sha256: str
    """Hex digest of the bytes [start, end); for Parquet, of the whole file."""
    file_size: int
    """Size of the whole file when the job was planned."""


def expand_inputs(patterns: list[str]) -> list[Path]:
    """The files named by `patterns` (paths or globs): in pattern order, each glob's matches sorted,
    each file once. Raises InputError for a pattern matching nothing, a directory, an unreadable file."""
    found: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        if hubdata.is_hub(pattern) or store.is_url(pattern):  # a Hub dataset or a store object: its local copy
            try:
                copy = hubdata.local_path(pattern)
            except (hubdata.HubDataError, store.StoreError) as error:
                raise InputError(str(error)) from None
            if copy.resolve() not in seen:
                seen.add(copy.resolve())
                found.append(copy)
            continue
        expanded = os.path.expanduser(pattern)
        if os.path.exists(expanded):  # first, so that a file named like a glob ("a[1].txt") is found
            matches = [expanded]
        elif any(char in expanded for char in "*?["):
            matches = sorted(glob.glob(expanded, recursive=True))
        else:
            matches = []
        if not matches:
            raise InputError(f"{pattern!r} matches no file; check the path (quote a glob such as 'data/*.jsonl')")
        for match in matches:
            path = Path(os.path.abspath(match))  # not resolve(): a symlink keeps its own name in record ids
            if path.is_dir():
                raise InputError(f"{path} is a directory; name the files in it instead, e.g. '{path}/*.jsonl'")
            try:
                with open(path, "rb"):
                    pass
            except OSError as error:
                raise InputError(f"{path} cannot be read ({error.strerror}); check its permissions") from error
            if path.resolve() not in seen:
                seen.add(path.resolve())
                found.append(path)
    return found


@dataclass(frozen=True)
class InputSample:
    """What submit learnt of one input without reading all of it."""

    name: str
    """The absolute path, store URL or Hub dataset, as the job's spec names it."""
    size: int
    records: int
    """Records in the sample."""
    whole: bool
    """The sample is the whole input (so `records` is its count)."""
    version: str | None
    """What changes when the input changes (size and mtime; a store's ETag); None for a Hub dataset."""


def input_version(name: str) -> str | None:
    """Size and modification time of a local file, the store's tag of an object (its ETag), None for
    a Hub dataset: planning compares it with submit's, so an input edited in between fails loudly."""
    if hubdata.is_hub(name):
        return None
    if store.is_url(name):
        fs, path = store.filesystem(name)
        return store.tag(store.call(name, "look it up", lambda: fs.info(path)))
    try:
        stat = os.stat(name)
    except OSError:
        return None
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def check_versions(versions: dict[str, str | None]) -> None:
    """Raise InputChanged for an input that is no longer what submit sampled."""
    for name, version in versions.items():
        if version is not None and input_version(name) != version:
            raise InputChanged(
                f"{name} changed after the job was submitted (or no longer exists); restore it or submit the job again"
            )


class _Label(str):
    """A store URL where the record code expects a Path: only `.name` and `str()` are used."""

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]


def sample_inputs(
    patterns: list[str],
    *,
    text_column: str | None,
    id_column: str | None,
    on_bad_line: str = "fail",
    sample_bytes: int = SAMPLE_BYTES,
    pair_column: str | None = None,
) -> list[InputSample]:
    """Check the inputs as submit can without reading whole corpora: each exists and is a readable
    file (a store object: through the store), its header or first record names the text and id
    columns, and the records of its first `sample_bytes` (a Parquet file: first SAMPLE_ROWS rows)
    parse. A bad line further in is found by planning, on a worker, and fails the job saying where."""
    _check_on_bad_line(on_bad_line)
    names = _expand_names(patterns)
    if not names:
        raise InputError("no input files given")
    if id_column is None:
        _check_default_ids_are_distinct([cast(Path, _Label(n)) if store.is_url(n) else Path(n) for n in names])
    seen_ids: dict[str, tuple[str, int]] | None = {} if id_column else None
    samples = [
        _sample(name, text_column, id_column, on_bad_line, sample_bytes, seen_ids, pair_column) for name in names
    ]
    if all(s.whole for s in samples) and not sum(s.records for s in samples):
        raise InputError(
            f"no records in {', '.join(names)}: the inputs are empty or hold only blank lines or a header"
            + (" (bad lines were left out by --on-bad-line skip)" if on_bad_line == "skip" else "")
        )
    return samples


def _expand_names(patterns: list[str]) -> list[str]:
    """Local paths and globs as expand_inputs finds them; store URLs (and their globs) by listing
    the store; Hub datasets as they are."""
    names: list[str] = []
    for pattern in patterns:
        if hubdata.is_hub(pattern):
            found = [pattern]
        elif store.is_url(pattern):
            found = _store_matches(pattern)
        else:
            found = [str(p) for p in expand_inputs([pattern])]
        names.extend(n for n in found if n not in names)
    return names


def _store_matches(url: str) -> list[str]:
    fs, path = store.filesystem(url)
    scheme = url.split("://", 1)[0]
    if any(char in path for char in "*?["):
        matches = sorted(store.call(url, "list it", lambda: fs.glob(path)))
        if not matches:
            raise InputError(f"{url!r} matches no object; check the URL (and the bucket)")
        return [f"{scheme}://{m}" for m in matches if not fs.isdir(m)]
    if store.call(url, "look it up", lambda: fs.isdir(path)):
        raise InputError(f"{url} is a folder; name the objects in it instead, e.g. '{url.rstrip('/')}/*.jsonl'")
    store.call(url, "look it up", lambda: fs.info(path))  # no such object: a clear error
    return [url]


def _sample(
    name: str,
    text_column: str | None,
    id_column: str | None,
    on_bad_line: str,
    sample_bytes: int,
    seen_ids: dict[str, tuple[str, int]] | None,
    pair_column: str | None = None,
) -> InputSample:
    if hubdata.is_hub(name):
        try:
            local = hubdata.local_path(name)
        except (hubdata.HubDataError, store.StoreError) as error:
            raise InputError(str(error)) from None
        label: Path = local
        opener: Any = lambda: open(local, "rb")  # noqa: E731, SIM115 - opened in the with below
        size = local.stat().st_size
    elif store.is_url(name):
        fs, path = store.filesystem(name)
        label = cast(Path, _Label(name))
        opener = lambda: store.call(name, "read it", lambda: fs.open(path, "rb"))  # noqa: E731
        size = int(store.call(name, "look it up", lambda: fs.info(path))["size"])
    else:
        label = Path(name)
        opener = lambda: _open_input(label, planned=False)  # noqa: E731
        size = label.stat().st_size
    fmt = input_format(Path(label.name))
    place = f"{label}, {'row' if fmt == 'parquet' else 'line'}"
    with opener() as handle:
        if fmt == "parquet":
            parquet, layout = _parquet_layout(label, handle, text_column, id_column, pair_column)
            rows = parquet.metadata.num_rows
            records = _parquet_records(parquet, layout, 0, min(rows, SAMPLE_ROWS), on_bad_line)
            whole = rows <= SAMPLE_ROWS
        else:
            data = handle.read(sample_bytes + 1)
            whole = len(data) <= sample_bytes
            if not whole:  # whole lines only: a line cut by the sample's end is not judged
                data = data[: data.rfind(b"\n") + 1] if b"\n" in data[:sample_bytes] else data[:sample_bytes]
            sample = io.BytesIO(data)
            layout = _text_layout(label, fmt, sample, text_column, id_column, on_bad_line, pair_column)
            records = _text_records(layout, sample, 0, None, 1, on_bad_line)
        count = 0
        for number, record in records:
            if record is None:
                continue
            count += 1
            if seen_ids is not None:
                earlier = seen_ids.setdefault(record[0], (place, number))
                if earlier != (place, number):
                    raise InputError(
                        f"duplicate id {record[0]!r}: {earlier[0]} {earlier[1]} and {place} {number}; the values "
                        "of --id-column must be unique across all inputs (or leave it out for <file name>:<line> ids)"
                    )
    return InputSample(name, size, count, whole, input_version(name))


def input_format(path: Path) -> str:
    """ "text", "jsonl", "csv", "tsv" or "parquet", from the file's extension (anything else is text)."""
    return format_of(path) or "text"


def plan_shards(
    paths: list[Path],
    *,
    shards: int | None,
    text_column: str | None,
    id_column: str | None,
    on_bad_line: str = "fail",
    target_records_per_shard: int = DEFAULT_RECORDS_PER_SHARD,
    pair_column: str | None = None,
) -> list[Shard]:
    """Check every input and split them into shards, balanced by records.

    `shards=None` aims at `target_records_per_shard` records per shard. A number asks for
    `min(shards, records)` shards; since a shard never spans two files, each file with records gets
    at least one and the rest are shared out by records, so with more files than shards asked the
    plan has one shard per file (more than asked). Within a file, shard sizes differ by at most one.
    """
    _check_on_bad_line(on_bad_line)
    if shards is not None and shards < 1:
        raise InputError(f"the number of shards must be at least 1, not {shards}")
    if target_records_per_shard < 1:
        raise ValueError(f"target_records_per_shard must be at least 1, not {target_records_per_shard}")
    if not paths:
        raise InputError("no input files given")
    files = [Path(os.path.abspath(p)) for p in paths]
    if id_column is None:
        _check_default_ids_are_distinct(files)
    seen_ids: dict[str, tuple[str, int]] | None = {} if id_column else None
    scans = [_scan(path, text_column, id_column, on_bad_line, seen_ids, pair_column) for path in files]
    total = sum(scan.records for scan in scans)
    if total == 0:
        left_out = " (bad lines were left out by --on-bad-line skip)" if any(scan.skipped for scan in scans) else ""
        raise InputError(
            f"no records in {', '.join(str(p) for p in files)}: the inputs are empty or hold only blank "
            f"lines or a header{left_out}"
        )
    wanted = shards if shards is not None else max(1, round(total / target_records_per_shard))
    counts = _allocate(min(wanted, total), [scan.records for scan in scans])
    planned: list[Shard] = []
    for scan, count in zip(scans, counts, strict=True):
        if count:
            cut = _cut_parquet if scan.fmt == "parquet" else _cut_text
            planned.extend(cut(scan, count, len(planned)))
    return planned


def read_shard(
    shard: Shard,
    *,
    text_column: str | None,
    id_column: str | None,
    on_bad_line: str = "fail",
    pair_column: str | None = None,
) -> Iterator[tuple[str, Text]]:
    """(record id, text) for each record of the shard, streamed; with `pair_column`, the text is the
    pair (text, second text). Pass the options the job was planned with. Raises InputChanged, before
    yielding anything, if the file changed since."""
    _check_on_bad_line(on_bad_line)
    # A Hub dataset or store object is read from this machine's own copy: the same bytes (checked below).
    path = (
        hubdata.local_path(shard.path) if hubdata.is_hub(shard.path) or store.is_url(shard.path) else Path(shard.path)
    )
    fmt = input_format(path)
    yielded = 0
    # One open handle for the check and the read: a file replaced after the check is not read.
    with _open_input(path, planned=True) as handle:
        _check_unchanged(shard, path, fmt, handle)
        if fmt == "parquet":
            parquet, layout = _parquet_layout(path, handle, text_column, id_column, pair_column)
            records = _parquet_records(parquet, layout, shard.start, shard.end, on_bad_line)
        else:
            layout = _text_layout(path, fmt, handle, text_column, id_column, on_bad_line, pair_column)
            records = _text_records(layout, handle, shard.start, shard.end, shard.first_line, on_bad_line)
        for _, record in records:
            if record is not None:
                yielded += 1
                yield record
    if yielded != shard.records:
        raise InputError(
            f"shard {shard.index} of {path}: read {yielded} records where planning counted {shard.records}; "
            "read it with the text column, id column and on-bad-line setting the job was planned with"
        )


def shard_ids(
    shard: Shard,
    *,
    text_column: str | None,
    id_column: str | None,
    on_bad_line: str = "fail",
    pair_column: str | None = None,
) -> list[str]:
    """The record ids `read_shard` yields for this shard, in order."""
    reader = read_shard(
        shard, text_column=text_column, id_column=id_column, on_bad_line=on_bad_line, pair_column=pair_column
    )
    return [record_id for record_id, _ in reader]


# --------------------------------------------------------------------------------------------
# Turning lines (or rows) into records


class _BadLine(Exception):
    """One line or row is not a usable record; the message says why."""


@dataclass(frozen=True)
class _Layout:
    """How the lines or rows of one input become (id, text) records."""

    path: Path
    fmt: str
    text_column: str | None = None  # resolved; None for plain text
    id_column: str | None = None
    header: tuple[str, ...] = ()  # CSV/TSV
    header_line: int = 0  # the header's line number (CSV/TSV); 0: no header
    pair_column: str | None = None  # the second text of a pair (a question for qa)

    def record(self, number: int, line: str) -> tuple[str, Text]:
        """(id, text) of a non-blank line; raises _BadLine."""
        if self.fmt == "text":
            return f"{self.path.name}:{number}", line
        fields = _json_object(line) if self.fmt == "jsonl" else self._csv_fields(number, line)
        return self.fields_record(number, fields)

    def fields_record(self, number: int, fields: dict[str, Any]) -> tuple[str, Text]:
        first = self._text(fields, self.text_column)
        text: Text = (first, self._text(fields, self.pair_column)) if self.pair_column else first
        if self.id_column is None:
            return f"{self.path.name}:{number}", text
        value = fields.get(self.id_column, _MISSING)
        if value is _MISSING:
            raise _BadLine(f"no {self.id_column!r} field")
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value), text
        if not isinstance(value, str):
            raise _BadLine(f"the id in {self.id_column!r} is {_kind(value)}; ids are strings or whole numbers")
        if not value.strip():
            raise _BadLine(f"the id in {self.id_column!r} is empty")
        return value, text

    @staticmethod
    def _text(fields: dict[str, Any], column: str | None) -> str:
        text = fields.get(column, _MISSING) if column else _MISSING
        if text is _MISSING:
            raise _BadLine(f"no {column!r} field")
        if not isinstance(text, str):
            raise _BadLine(f"the {column!r} field is {_kind(text)}, not a string")
        return text

    def _csv_fields(self, number: int, line: str) -> dict[str, Any]:
        try:
            # The newline added here ends up inside the last field only if a quote was left open.
            row = next(csv.reader((line + "\n",), **csv_dialect(self.fmt)))
        except csv.Error as error:
            raise _BadLine(f"not a valid {self.fmt.upper()} line ({error})") from None
        if self.fmt == "csv" and row and row[-1].endswith("\n"):
            raise InputError(
                f"{self.path}, line {number}: a quoted field runs past the end of the line. bertq reads CSV "
                "one record per line, so fields cannot hold line breaks: convert the file to JSONL (one "
                "JSON object per line), e.g. pandas.read_csv(f).to_json(out, orient='records', lines=True)"
            )
        if len(row) != len(self.header):
            raise _BadLine(f"{len(row)} fields where the header has {len(self.header)}")
        return dict(zip(self.header, row, strict=True))


def _json_object(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError as error:
        raise _BadLine(f"not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise _BadLine(f"expected a JSON object, found {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    names = {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "an array",
        dict: "an object",
        str: "a string",
    }
    return names.get(type(value), type(value).__name__)


def _line_text(raw: bytes, number: int) -> str:
    """The line without its line ending (nor a byte-order mark on line 1). UnicodeDecodeError if not UTF-8."""
    text = raw.decode("utf-8")
    if number == 1 and text.startswith("\ufeff"):
        text = text[1:]
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    return text


def _is_blank(raw: bytes, number: int) -> bool:
    try:
        return not _line_text(raw, number).strip()
    except UnicodeDecodeError:
        return False  # a bad line, not a blank one


def _undecodable(error: UnicodeDecodeError) -> str:
    return f"bytes that are not UTF-8 ({error.reason} at byte {error.start} of the line); re-encode the file as UTF-8"


def _bad_line(path: Path, unit: str, number: int, problem: str, on_bad_line: str) -> None:
    if on_bad_line == "fail":
        raise InputError(
            f"{path}, {unit} {number}: {problem}. Fix the {unit}, or pass --on-bad-line skip to leave such {unit}s out"
        )


def _resolve_text_column(
    path: Path,
    columns: list[str],
    text_column: str | None,
    id_column: str | None,
    where: str,
    pair_column: str | None = None,
) -> str:
    listing = ", ".join(map(repr, columns)) or "no columns"
    if text_column is None:
        text_column = guess_text_column(columns)
        if text_column is None:
            raise InputError(
                f"{path}: no text column: {where} has {listing}, none of {', '.join(TEXT_COLUMN_GUESSES)}; "
                "name it with --text-column"
            )
    for column, option in (
        (text_column, "--text-column"),
        (id_column, "--id-column"),
        (pair_column, "--text-pair-column"),
    ):
        if column is not None and column not in columns:
            raise InputError(
                f"{path}: no column {column!r}{did_you_mean(column, columns)}: {where} has {listing}; name the "
                f"right one with {option}"
            )
    return text_column


def _text_layout(
    path: Path,
    fmt: str,
    handle: IO[bytes],
    text_column: str | None,
    id_column: str | None,
    on_bad_line: str,
    pair_column: str | None = None,
) -> _Layout:
    """Read the header (CSV/TSV) or the first object (JSONL) to settle the text column."""
    if fmt == "text" and pair_column:
        raise InputError(
            f"{path}: plain text has one text a line, so it has no {pair_column!r} column for the second text "
            "(or question); use JSONL, CSV or TSV with both columns"
        )
    if fmt == "text":
        if id_column:
            raise InputError(
                f"{path}: plain text has no columns, so --id-column {id_column!r} cannot apply; use JSONL, CSV "
                "or TSV for your own ids, or leave --id-column out for <file name>:<line> ids"
            )
        return _Layout(path, fmt)
    handle.seek(0)
    for number, raw in enumerate(handle, start=1):
        try:
            line = _line_text(raw, number)
        except UnicodeDecodeError as error:
            if fmt != "jsonl":
                raise InputError(f"{path}, line {number}: the header has {_undecodable(error)}") from None
            _bad_line(path, "line", number, _undecodable(error), on_bad_line)
            continue
        if not line.strip():
            continue
        if fmt == "jsonl":
            try:
                first = _json_object(line)
            except _BadLine as bad:
                _bad_line(path, "line", number, str(bad), on_bad_line)
                continue
            where = f"the first record (line {number})"
            text = _resolve_text_column(path, list(first), text_column, id_column, where, pair_column)
            return _Layout(path, fmt, text, id_column, pair_column=pair_column)
        header = tuple(next(csv.reader((line,), **csv_dialect(fmt))))
        where = f"the header (line {number})"
        text = _resolve_text_column(path, list(header), text_column, id_column, where, pair_column)
        return _Layout(path, fmt, text, id_column, header, number, pair_column)
    return _Layout(path, fmt, text_column, id_column, pair_column=pair_column)  # no record: nothing to settle


def _text_records(
    layout: _Layout, handle: IO[bytes], start: int, end: int | None, first_line: int, on_bad_line: str
) -> Iterator[tuple[int, tuple[str, Text] | None]]:
    """(line number, (id, text)) for each record in [start, end); (line number, None) for each bad
    line left out. Blank lines and the header yield nothing."""
    handle.seek(start)
    offset = start
    for number, raw in enumerate(handle, start=first_line):
        if end is not None and offset >= end:
            return
        offset += len(raw)
        if number == layout.header_line:
            continue
        try:
            line = _line_text(raw, number)
            if not line.strip():
                continue
            record = layout.record(number, line)
        except UnicodeDecodeError as error:
            _bad_line(layout.path, "line", number, _undecodable(error), on_bad_line)
            record = None
        except _BadLine as bad:
            _bad_line(layout.path, "line", number, str(bad), on_bad_line)
            record = None
        yield number, record


def _parquet_layout(
    path: Path, source: Any, text_column: str | None, id_column: str | None, pair_column: str | None = None
) -> tuple[Any, _Layout]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as error:
        raise InputError(f"{path}: not a readable Parquet file ({error})") from error
    schema = parquet.schema_arrow
    text = _resolve_text_column(path, schema.names, text_column, id_column, "the schema", pair_column)
    for column in (text, pair_column):
        kind = schema.field(column).type if column else pa.string()
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise InputError(
                f"{path}: column {column!r} holds {kind}, not text; name the text column with --text-column"
            )
    return parquet, _Layout(path, "parquet", text, id_column, pair_column=pair_column)


def _parquet_records(
    parquet: Any, layout: _Layout, start: int, end: int, on_bad_line: str
) -> Iterator[tuple[int, tuple[str, Text] | None]]:
    """(row number, (id, text)) for rows [start, end), 1-based numbers; (row number, None) for bad rows left out."""
    assert layout.text_column is not None
    columns = list(dict.fromkeys(c for c in (layout.text_column, layout.pair_column, layout.id_column) if c))
    groups, row, first_row = [], 0, None  # only the row groups that overlap the range are read
    for group in range(parquet.metadata.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        if row < end and row + size > start:
            groups.append(group)
            first_row = row if first_row is None else first_row
        row += size
    if not groups:
        return
    row = first_row or 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=groups, columns=columns):
        low, high = max(start - row, 0), min(end - row, batch.num_rows)
        if low < high:
            values = {name: batch.column(name).slice(low, high - low).to_pylist() for name in columns}
            for offset in range(high - low):
                number = row + low + offset + 1
                try:
                    record: tuple[str, Text] | None = layout.fields_record(
                        number, {name: values[name][offset] for name in columns}
                    )
                except _BadLine as bad:
                    _bad_line(layout.path, "row", number, str(bad), on_bad_line)
                    record = None
                yield number, record
        row += batch.num_rows
        if row >= end:
            return


# --------------------------------------------------------------------------------------------
# Planning: a first pass checks and counts, a second cuts and hashes


@dataclass
class _Scan:
    """What the first pass over one input found."""

    path: Path
    fmt: str
    size: int
    records: int
    skipped: list[int] = field(default_factory=list)  # 1-based numbers of the bad lines (rows) left out
    header_line: int = 0


def _scan(
    path: Path,
    text_column: str | None,
    id_column: str | None,
    on_bad_line: str,
    seen_ids: dict[str, tuple[str, int]] | None,
    pair_column: str | None = None,
) -> _Scan:
    fmt = input_format(path)
    with _open_input(path, planned=False) as handle:
        size = os.fstat(handle.fileno()).st_size
        if fmt == "parquet":
            parquet, layout = _parquet_layout(path, handle, text_column, id_column, pair_column)
            records = _parquet_records(parquet, layout, 0, parquet.metadata.num_rows, on_bad_line)
            place = f"{path}, row"
        else:
            layout = _text_layout(path, fmt, handle, text_column, id_column, on_bad_line, pair_column)
            records = _text_records(layout, handle, 0, None, 1, on_bad_line)
            place = f"{path}, line"
        scan = _Scan(path, fmt, size, 0, header_line=layout.header_line)
        for number, record in records:
            if record is None:
                scan.skipped.append(number)
                continue
            scan.records += 1
            if seen_ids is not None:
                earlier = seen_ids.setdefault(record[0], (place, number))
                if earlier != (place, number):
                    raise InputError(
                        f"duplicate id {record[0]!r}: {earlier[0]} {earlier[1]} and {place} {number}; the values "
                        "of --id-column must be unique across all inputs (or leave it out for <file name>:<line> ids)"
                    )
    return scan


def _check_default_ids_are_distinct(paths: list[Path]) -> None:
    by_name: dict[str, Path] = {}
    for path in paths:
        other = by_name.setdefault(path.name, path)
        if other != path:
            raise InputError(
                f"two inputs are named {path.name!r} ({other} and {path}), so their record ids "
                "(<file name>:<line>) would collide; rename one, or take ids from a column with --id-column"
            )


def _allocate(wanted: int, records: list[int]) -> list[int]:
    """Shards per file: at least one per file with records, the rest by records, none above a file's records."""
    total = sum(records)
    counts = [max(1, wanted * n // total) if n else 0 for n in records]
    # Hand out what is left one shard at a time, to the file whose shards are currently the largest.
    largest = [(-n / c, i) for i, (n, c) in enumerate(zip(records, counts, strict=True)) if 0 < c < n]
    heapq.heapify(largest)
    for _ in range(wanted - sum(counts)):
        if not largest:
            break
        _, i = heapq.heappop(largest)
        counts[i] += 1
        if counts[i] < records[i]:
            heapq.heappush(largest, (-records[i] / counts[i], i))
    return counts


def _even_cuts(records: int, count: int) -> list[int]:
    """The record indices at which shards 1 .. count-1 begin: sizes differ by at most one."""
    return [records * i // count for i in range(1, count)]


def _cut_text(scan: _Scan, count: int, first_index: int) -> list[Shard]:
    """Second pass: find the byte offset where each shard begins and hash each range."""
    cuts = iter(_even_cuts(scan.records, count))
    next_cut = next(cuts, None)
    skipped = set(scan.skipped)
    shards: list[Shard] = []
    start, first_line, in_shard, digest = 0, 1, 0, hashlib.sha256()
    offset = record_index = 0
    with open(scan.path, "rb", buffering=READ_CHUNK) as handle:
        for number, raw in enumerate(handle, start=1):
            # The same test the first pass made, without parsing again: not blank, not the header, not bad.
            if number != scan.header_line and number not in skipped and not _is_blank(raw, number):
                if record_index == next_cut:  # a new shard begins at this record's line
                    shards.append(
                        Shard(
                            first_index + len(shards),
                            str(scan.path),
                            start,
                            offset,
                            first_line,
                            in_shard,
                            digest.hexdigest(),
                            scan.size,
                        )
                    )
                    start, first_line, in_shard, digest = offset, number, 0, hashlib.sha256()
                    next_cut = next(cuts, None)
                record_index += 1
                in_shard += 1
            digest.update(raw)
            offset += len(raw)
    if record_index != scan.records or offset != scan.size:
        raise _changed_while_planning(scan.path)
    shards.append(
        Shard(
            first_index + len(shards),
            str(scan.path),
            start,
            offset,
            first_line,
            in_shard,
            digest.hexdigest(),
            scan.size,
        )
    )
    return shards


def _cut_parquet(scan: _Scan, count: int, first_index: int) -> list[Shard]:
    import pyarrow.parquet as pq

    with open(scan.path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size != scan.size:
            raise _changed_while_planning(scan.path)
        digest = _sha256_of_range(handle, 0, scan.size)
        rows = pq.ParquetFile(handle).metadata.num_rows
    cuts = [0, *(_row_of_record(r, scan.skipped) for r in _even_cuts(scan.records, count)), rows]
    sizes = [0, *_even_cuts(scan.records, count), scan.records]
    return [
        Shard(
            first_index + i,
            str(scan.path),
            cuts[i],
            cuts[i + 1],
            cuts[i] + 1,
            sizes[i + 1] - sizes[i],
            digest,
            scan.size,
        )
        for i in range(count)
    ]


def _changed_while_planning(path: Path) -> InputChanged:
    return InputChanged(f"{path} changed while the job was being planned; submit again once the file is complete")


def _row_of_record(record_index: int, skipped: list[int]) -> int:
    """The 0-based row of the record_index-th record, given the sorted 1-based numbers of bad rows."""
    row = record_index
    for bad in skipped:
        if bad - 1 > row:
            break
        row += 1  # a bad row at or before the candidate pushes the record one row further
    return row


# --------------------------------------------------------------------------------------------
# Checking that a file is still what was planned


def _open_input(path: Path, *, planned: bool) -> IO[bytes]:
    try:
        return open(path, "rb", buffering=READ_CHUNK)
    except FileNotFoundError:
        if not planned:
            raise InputError(f"{path} does not exist; check the path") from None
        raise InputChanged(
            f"{path} no longer exists: it was moved or removed after the job was planned; restore it or submit again"
        ) from None
    except OSError as error:
        raise InputError(f"{path} cannot be read ({error.strerror}); check its permissions") from error


def _sha256_of_range(handle: IO[bytes], start: int, end: int) -> str:
    digest = hashlib.sha256()
    handle.seek(start)
    remaining = end - start
    while remaining > 0:
        chunk = handle.read(min(READ_CHUNK, remaining))
        if not chunk:
            break
        digest.update(chunk)
        remaining -= len(chunk)
    return digest.hexdigest()


def _check_unchanged(shard: Shard, path: Path, fmt: str, handle: IO[bytes]) -> None:
    size = os.fstat(handle.fileno()).st_size
    if size != shard.file_size:
        raise InputChanged(
            f"{path} changed after the job was planned: it has {size} bytes where planning saw {shard.file_size}; "
            "restore the file or submit the job again"
        )
    start, end = (0, size) if fmt == "parquet" else (shard.start, shard.end)
    if _sha256_of_range(handle, start, end) != shard.sha256:
        raise InputChanged(
            f"{path} changed after the job was planned: bytes {start}-{end} (shard {shard.index}) differ from "
            "what was planned; restore the file or submit the job again"
        )


def _check_on_bad_line(on_bad_line: str) -> None:
    if on_bad_line not in ON_BAD_LINE_CHOICES:
        raise InputError(f"on_bad_line must be one of {', '.join(ON_BAD_LINE_CHOICES)}, not {on_bad_line!r}")
