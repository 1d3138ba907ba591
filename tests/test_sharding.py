"""Sharding bulk-inference inputs: every record in exactly one shard, read back once, in order."""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertq.errors import BertqError
from bertq.sharding import (
    InputChanged,
    InputError,
    Shard,
    expand_inputs,
    input_format,
    plan_shards,
    read_shard,
    shard_ids,
)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpus" / "goemotions_reddit_comments.tsv"


def plan(paths: list[Path], shards: int | None = None, **options) -> list[Shard]:
    options.setdefault("text_column", None)
    options.setdefault("id_column", None)
    return plan_shards(paths, shards=shards, **options)


def read_all(shards: list[Shard], **options) -> list[tuple[str, str]]:
    options.setdefault("text_column", None)
    options.setdefault("id_column", None)
    return [record for shard in shards for record in read_shard(shard, **options)]


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def assert_tiles(shards: list[Shard], path: Path) -> None:
    """The shards of one text file cover it exactly, each starting right after a newline."""
    data = path.read_bytes()
    assert shards[0].start == 0 and shards[-1].end == len(data)
    for before, after in itertools.pairwise(shards):
        assert before.end == after.start
        assert data[after.start - 1 : after.start] == b"\n"
        assert after.first_line == data[: after.start].count(b"\n") + 1
    for shard in shards:
        data[shard.start : shard.end].decode("utf-8")  # never cuts a character


# --------------------------------------------------------------------------------------------
# Inputs and formats


def test_expand_inputs_globs_sorted_deduplicated(tmp_path: Path) -> None:
    for name in ("b.txt", "a.txt", "c.jsonl", "d[1].csv"):
        write(tmp_path / name, "x\n")
    patterns = [str(tmp_path / "*.txt"), str(tmp_path / "a.txt"), str(tmp_path / "c.jsonl"), str(tmp_path / "d[1].csv")]
    found = expand_inputs(patterns)
    assert [p.name for p in found] == ["a.txt", "b.txt", "c.jsonl", "d[1].csv"]
    assert all(p.is_absolute() for p in found)


def test_expand_inputs_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.jsonl")])
    with pytest.raises(InputError, match="is a directory"):
        expand_inputs([str(tmp_path)])
    secret = write(tmp_path / "secret.txt", "x\n")
    secret.chmod(0)
    try:
        if os.geteuid() != 0:  # root reads anything
            with pytest.raises(InputError, match="cannot be read"):
                expand_inputs([str(secret)])
    finally:
        secret.chmod(0o644)
    assert issubclass(InputError, BertqError) and issubclass(InputChanged, BertqError)


def test_input_format() -> None:
    formats = {
        "a.txt": "text",
        "a.raw": "text",
        "a": "text",
        "a.md": "text",
        "a.jsonl": "jsonl",
        "a.ndjson": "jsonl",
        "a.JSON": "jsonl",
        "a.csv": "csv",
        "a.tsv": "tsv",
        "a.parquet": "parquet",
    }
    for name, fmt in formats.items():
        assert input_format(Path(name)) == fmt


def test_importing_the_module_does_not_import_pyarrow() -> None:
    code = "import sys, bertq.sharding; assert 'pyarrow' not in sys.modules, 'pyarrow imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------
# Plain text


def test_blank_lines_are_not_records_but_count_in_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "t.txt", "one\n\n   \ntwo\n\t\nthree\n\n")
    shards = plan([path], shards=2)
    assert sum(s.records for s in shards) == 3
    assert read_all(shards) == [("t.txt:1", "one"), ("t.txt:4", "two"), ("t.txt:6", "three")]
    assert_tiles(shards, path)


def test_last_line_without_newline_belongs_to_last_shard(tmp_path: Path) -> None:
    path = write(tmp_path / "t.txt", "a\nb\nc\nd")
    shards = plan([path], shards=2)
    assert [s.records for s in shards] == [2, 2]
    assert shards[-1].end == path.stat().st_size
    assert list(read_shard(shards[-1], text_column=None, id_column=None)) == [("t.txt:3", "c"), ("t.txt:4", "d")]


def test_multibyte_character_at_the_even_split_point(tmp_path: Path) -> None:
    lines = ["a", "😀" * 50, "b", "€" * 3, "c"]  # 4-byte and 3-byte characters
    data = ("\n".join(lines) + "\n").encode()
    middle = len(data) // 2
    with pytest.raises(UnicodeDecodeError):  # the byte halfway falls inside a character
        data[:middle].decode("utf-8")
    path = write(tmp_path / "emoji.txt", data)
    for count in (2, 3, 5):
        shards = plan([path], shards=count)
        assert_tiles(shards, path)
        assert [text for _, text in read_all(shards)] == lines


def test_crlf_line_endings(tmp_path: Path) -> None:
    path = write(tmp_path / "w.txt", b"first\r\nsecond\r\n\r\nthird\r\n")
    shards = plan([path], shards=3)
    assert_tiles(shards, path)
    assert read_all(shards) == [("w.txt:1", "first"), ("w.txt:2", "second"), ("w.txt:4", "third")]


def test_single_record_and_more_shards_than_records(tmp_path: Path) -> None:
    single = write(tmp_path / "one.txt", "only\n")
    assert [(s.start, s.end, s.records) for s in plan([single], shards=4)] == [(0, 5, 1)]
    three = write(tmp_path / "three.txt", "\nx\ny\n\nz")
    shards = plan([three], shards=10)
    assert [s.records for s in shards] == [1, 1, 1]
    assert [s.index for s in shards] == [0, 1, 2]
    assert_tiles(shards, three)


def test_auto_shard_count(tmp_path: Path) -> None:
    path = write(tmp_path / "t.txt", "".join(f"line {i}\n" for i in range(100)))
    shards = plan([path], target_records_per_shard=30)
    assert [s.records for s in shards] == [33, 33, 34]
    assert len(plan([path])) == 1


def test_plain_text_has_no_id_column(tmp_path: Path) -> None:
    path = write(tmp_path / "t.txt", "a\n")
    with pytest.raises(InputError, match="plain text has no columns"):
        plan([path], id_column="id")


# --------------------------------------------------------------------------------------------
# Several files


def test_several_files_and_a_glob(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "".join(f"a{i}\n" for i in range(30)))
    write(tmp_path / "b.txt", "".join(f"b{i}\n" for i in range(10)))
    write(tmp_path / "c.jsonl", "".join(json.dumps({"text": f"c{i}"}) + "\n" for i in range(60)))
    write(tmp_path / "empty.txt", "\n\n")
    paths = expand_inputs([str(tmp_path / "*.txt"), str(tmp_path / "c.jsonl")])
    shards = plan(paths, shards=10)
    by_file = {p.name: [s for s in shards if s.path == str(p)] for p in paths}
    assert {name: len(s) for name, s in by_file.items()} == {"a.txt": 3, "b.txt": 1, "empty.txt": 0, "c.jsonl": 6}
    assert [s.index for s in shards] == list(range(10))
    for name, file_shards in by_file.items():
        if file_shards:
            assert_tiles(file_shards, tmp_path / name)
    texts = [text for _, text in read_all(shards)]
    assert texts == [f"a{i}" for i in range(30)] + [f"b{i}" for i in range(10)] + [f"c{i}" for i in range(60)]


def test_more_files_than_shards_gives_one_shard_per_file(tmp_path: Path) -> None:
    paths = [write(tmp_path / f"{n}.txt", f"{n}\n") for n in range(3)]
    assert len(plan(paths, shards=1)) == 3


def test_default_ids_of_same_named_files_would_collide(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    paths = [write(tmp_path / "x" / "d.txt", "a\n"), write(tmp_path / "y" / "d.txt", "b\n")]
    with pytest.raises(InputError, match="would collide"):
        plan(paths)


# --------------------------------------------------------------------------------------------
# CSV, TSV, JSONL


def test_csv_with_header(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", 'id,text\n1,"hello, world"\n2,"say ""hi"""\n\n3,plain\n')
    shards = plan([path], shards=3)
    assert_tiles(shards, path)
    assert shards[0].start == 0 and shards[0].first_line == 1  # the header is in the first range, not a record
    assert [s.records for s in shards] == [1, 1, 1]
    assert read_all(shards) == [("d.csv:2", "hello, world"), ("d.csv:3", 'say "hi"'), ("d.csv:5", "plain")]
    assert read_all(shards, id_column="id") == [("1", "hello, world"), ("2", 'say "hi"'), ("3", "plain")]


def test_tsv_with_header_keeps_quotes(tmp_path: Path) -> None:
    path = write(tmp_path / "d.tsv", 'sentence\tlabel\n"quoted" word\t1\nit\'s\t0\n')
    shards = plan([path], shards=2)
    assert read_all(shards) == [("d.tsv:2", '"quoted" word'), ("d.tsv:3", "it's")]


def test_csv_field_with_line_break_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", 'id,text\n1,"two\nlines"\n')
    for on_bad_line in ("fail", "skip"):
        with pytest.raises(InputError, match="JSONL"):
            plan([path], on_bad_line=on_bad_line)


def test_ragged_csv_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "id,text\n1,a\n2,b,extra\n3,c\n")
    with pytest.raises(InputError, match=r"line 3: 3 fields where the header has 2"):
        plan([path])
    assert read_all(plan([path], on_bad_line="skip"), on_bad_line="skip") == [("d.csv:2", "a"), ("d.csv:4", "c")]


def test_jsonl_with_id_column(tmp_path: Path) -> None:
    rows = [{"id": "r1", "text": "a"}, {"id": 7, "text": "b"}, {"id": "r3", "text": ""}]
    path = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    shards = plan([path], shards=2, id_column="id")
    assert read_all(shards, id_column="id") == [("r1", "a"), ("7", "b"), ("r3", "")]
    assert shard_ids(shards[1], text_column=None, id_column="id", on_bad_line="fail") == ["7", "r3"]


def test_jsonl_explicit_text_column_and_non_string_text(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"body": "a"}\n{"body": 3}\n{"body": "c"}\n')
    with pytest.raises(InputError, match=r"line 2: the 'body' field is a number, not a string"):
        plan([path], text_column="body")
    shards = plan([path], text_column="body", on_bad_line="skip")
    assert read_all(shards, text_column="body", on_bad_line="skip") == [("d.jsonl:1", "a"), ("d.jsonl:3", "c")]


def test_duplicate_ids_name_both_places(tmp_path: Path) -> None:
    first = write(tmp_path / "a.jsonl", '{"id": "x", "text": "a"}\n{"id": "y", "text": "b"}\n')
    second = write(tmp_path / "b.csv", "id,text\nz,c\ny,d\n")
    with pytest.raises(InputError, match=r"duplicate id 'y': .*a\.jsonl, line 2 and .*b\.csv, line 3"):
        plan([first, second], id_column="id")


def test_empty_id_is_a_bad_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.tsv", "id\ttext\n\ta\nb\tb\n")
    with pytest.raises(InputError, match=r"line 2: the id in 'id' is empty"):
        plan([path], id_column="id")


# --------------------------------------------------------------------------------------------
# Bad input


def test_undecodable_bytes_fail_or_skip(tmp_path: Path) -> None:
    path = write(tmp_path / "t.txt", b"good\ncaf\xe9\nalso good\n")
    with pytest.raises(InputError, match=r"t\.txt, line 2: bytes that are not UTF-8.*--on-bad-line skip"):
        plan([path])
    shards = plan([path], shards=2, on_bad_line="skip")
    assert sum(s.records for s in shards) == 2
    assert read_all(shards, on_bad_line="skip") == [("t.txt:1", "good"), ("t.txt:3", "also good")]
    with pytest.raises(InputError, match="line 2"):  # read with the wrong setting
        read_all(shards, on_bad_line="fail")


def test_malformed_json_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"text": "a"}\n{"text": "b"\n[1, 2]\n{"text": "d"}\n')
    with pytest.raises(InputError, match=r"d\.jsonl, line 2: not valid JSON.*--on-bad-line skip"):
        plan([path])
    shards = plan([path], shards=2, on_bad_line="skip")
    assert read_all(shards, on_bad_line="skip") == [("d.jsonl:1", "a"), ("d.jsonl:4", "d")]


def test_missing_columns(tmp_path: Path) -> None:
    tsv = write(tmp_path / "d.tsv", "id\tbody\n1\ta\n")
    with pytest.raises(InputError, match=r"no text column: the header \(line 1\) has 'id', 'body'.*--text-column"):
        plan([tsv])
    with pytest.raises(InputError, match=r"no column 'txt': .*'id', 'body'.*--text-column"):
        plan([tsv], text_column="txt")
    with pytest.raises(InputError, match=r"no column 'key': .*--id-column"):
        plan([tsv], text_column="body", id_column="key")
    jsonl = write(tmp_path / "d.jsonl", '{"body": "a"}\n')
    with pytest.raises(InputError, match=r"the first record \(line 1\) has 'body'"):
        plan([jsonl])


def test_empty_input(tmp_path: Path) -> None:
    paths = [
        write(tmp_path / "e.txt", ""),
        write(tmp_path / "blank.txt", "\n  \n"),
        write(tmp_path / "h.csv", "text\n"),
    ]
    with pytest.raises(InputError, match="no records"):
        plan(paths)
    with pytest.raises(InputError, match="bad lines were left out"):
        plan([write(tmp_path / "bad.jsonl", "nope\n")], on_bad_line="skip")


def test_bad_options(tmp_path: Path) -> None:
    path = write(tmp_path / "t.txt", "a\n")
    with pytest.raises(InputError, match="at least 1"):
        plan([path], shards=0)
    with pytest.raises(InputError, match="on_bad_line"):
        plan([path], on_bad_line="ignore")
    with pytest.raises(InputError, match="does not exist"):
        plan([tmp_path / "missing.txt"])


# --------------------------------------------------------------------------------------------
# Changed after planning


def test_input_changed_after_planning(tmp_path: Path) -> None:
    path = write(tmp_path / "t.txt", "".join(f"line {i}\n" for i in range(10)))
    shards = plan([path], shards=2)
    with path.open("ab") as handle:
        handle.write(b"appended\n")
    with pytest.raises(InputChanged, match=r"t\.txt changed after the job was planned"):
        next(read_shard(shards[0], text_column=None, id_column=None))

    write(path, "".join(f"line {i}\n" for i in range(10)))
    assert len(read_all(shards)) == 10  # restored: readable again
    data = bytearray(path.read_bytes())
    data[shards[1].start] = ord("L")  # same size, one byte different in the second range
    write(path, bytes(data))
    assert len(list(read_shard(shards[0], text_column=None, id_column=None))) == 5
    with pytest.raises(InputChanged, match="changed after the job was planned"):
        list(read_shard(shards[1], text_column=None, id_column=None))

    path.unlink()
    with pytest.raises(InputChanged, match="no longer exists"):
        list(read_shard(shards[0], text_column=None, id_column=None))


# --------------------------------------------------------------------------------------------
# Parquet


def write_parquet(path: Path, columns: dict[str, list], row_group_size: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def test_parquet(tmp_path: Path) -> None:
    texts = [f"text {i}" for i in range(100)]
    path = write_parquet(tmp_path / "d.parquet", {"key": [f"k{i}" for i in range(100)], "text": texts}, 17)
    shards = plan([path], shards=6, id_column="key")
    assert [(s.start, s.end) for s in shards] == [(0, 16), (16, 33), (33, 50), (50, 66), (66, 83), (83, 100)]
    assert [s.first_line for s in shards] == [1, 17, 34, 51, 67, 84]
    assert len({s.sha256 for s in shards}) == 1
    assert read_all(shards, id_column="key") == [(f"k{i}", t) for i, t in enumerate(texts)]
    assert read_all(shards)[:2] == [("d.parquet:1", "text 0"), ("d.parquet:2", "text 1")]

    with path.open("r+b") as handle:  # the whole file is hashed: any byte counts
        handle.seek(path.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(InputChanged):
        list(read_shard(shards[0], text_column=None, id_column="key"))


def test_parquet_null_text_and_wrong_type(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "d.parquet", {"text": ["a", None, "c", None, "e"]}, 2)
    with pytest.raises(InputError, match=r"row 2: the 'text' field is null, not a string"):
        plan([path])
    shards = plan([path], shards=3, on_bad_line="skip")
    assert [(s.start, s.end, s.records) for s in shards] == [(0, 2, 1), (2, 4, 1), (4, 5, 1)]
    assert read_all(shards, on_bad_line="skip") == [("d.parquet:1", "a"), ("d.parquet:3", "c"), ("d.parquet:5", "e")]
    numbers = write_parquet(tmp_path / "n.parquet", {"text": [1, 2]}, 10)
    with pytest.raises(InputError, match="not text"):
        plan([numbers])


# --------------------------------------------------------------------------------------------
# The core property: every record exactly once, in order


LINE_POOL = ["hello", "wörld", "😀😀", "€", "日本語のテキスト", "", "   ", "\t", "x" * 40, "a b c", "\u3000"]


def random_text_file(rng: random.Random, path: Path) -> list[tuple[str, str]]:
    """Write a random plain-text file; return the records a reader must find in it."""
    count = rng.randrange(1, 80)
    lines = [rng.choice(LINE_POOL) + rng.choice(["", "", str(rng.randrange(1000))]) for _ in range(count)]
    ending = rng.choice(["\n", "\r\n"])
    data = ending.join(lines) + rng.choice([ending, ""])
    write(path, data)
    return [(f"{path.name}:{n}", line) for n, line in enumerate(lines, start=1) if line.strip()]


def random_jsonl_file(rng: random.Random, path: Path, first_id: int) -> list[tuple[str, str]]:
    records, out = [], []
    for n in range(1, rng.randrange(1, 60)):
        if rng.random() < 0.15:
            out.append(rng.choice(["", "  "]))
            continue
        text = rng.choice(LINE_POOL)
        out.append(json.dumps({"id": f"r{first_id + n}", "text": text}, ensure_ascii=rng.random() < 0.5))
        records.append((f"r{first_id + n}", text))
    write(path, "\n".join(out) + "\n")
    return records


def test_every_record_exactly_once_in_order(tmp_path: Path) -> None:
    rng = random.Random(1234)
    for case in range(150):
        folder = tmp_path / str(case)
        folder.mkdir()
        expected = random_text_file(rng, folder / "t.txt")
        if not expected:
            continue
        count = rng.choice([None, 1, 2, 3, 5, 8, 13, 100])
        shards = plan([folder / "t.txt"], shards=count, target_records_per_shard=rng.randrange(1, 30))
        if count is not None:
            assert len(shards) == min(count, len(expected))
        assert_tiles(shards, folder / "t.txt")
        assert all(s.records > 0 for s in shards)
        assert sum(s.records for s in shards) == len(expected)
        got = read_all(shards)
        assert got == expected, f"case {case}, shards={count}"
        assert len({record_id for record_id, _ in got}) == len(got)


def test_every_record_exactly_once_across_files(tmp_path: Path) -> None:
    rng = random.Random(99)
    for case in range(40):
        folder = tmp_path / str(case)
        folder.mkdir()
        expected: list[tuple[str, str]] = []
        paths = []
        for n in range(rng.randrange(1, 5)):
            path = folder / f"part{n}.jsonl"
            expected += random_jsonl_file(rng, path, first_id=1000 * n)
            paths.append(path)
        if not expected:
            continue
        count = rng.randrange(1, 20)
        shards = plan(paths, shards=count, id_column="id")
        files_with_records = len({s.path for s in shards})
        assert len(shards) in (min(count, len(expected)), files_with_records)
        assert sum(s.records for s in shards) == len(expected)
        assert read_all(shards, id_column="id") == expected


# --------------------------------------------------------------------------------------------
# The real corpus


@pytest.mark.skipif(not CORPUS.exists(), reason="needs ../shared/data/corpus")
def test_goemotions_corpus_in_eight_shards() -> None:
    with CORPUS.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    assert len(rows) == 54_263
    ids = [row[0] for row in rows]
    unique = len(set(ids)) == len(ids)
    id_column = "id" if unique else None

    started = time.perf_counter()
    shards = plan([CORPUS], shards=8, id_column=id_column)
    planning_seconds = time.perf_counter() - started
    assert planning_seconds < 5, planning_seconds  # a loose bound: about 0.2 s here, on a busy machine

    assert len(shards) == 8 and sum(s.records for s in shards) == 54_263
    assert max(s.records for s in shards) - min(s.records for s in shards) <= 1
    assert_tiles(shards, CORPUS)
    got = read_all(shards, id_column=id_column)
    if unique:
        assert [record_id for record_id, _ in got] == ids
    else:
        assert len({record_id for record_id, _ in got}) == len(got)
    assert [text for _, text in got] == [row[1] for row in rows]


# --------------------------------------------------------------------------------------------
# Submit samples; the planning step (on a worker) reads everything.


def test_submit_samples_the_inputs_and_planning_finds_a_bad_line_past_the_sample(tmp_path):
    from bertq.bulk import InferSpec
    from bertq.bulk import plan_shards as plan_on_worker
    from bertq.sharding import sample_inputs

    good = "".join(f"review number {i} is fine\n" for i in range(60_000))  # ~1.6 MB: past the 1 MiB sample
    corpus = write(tmp_path / "big.txt", good.encode() + b"caf\xe9 au lait\n")
    [sample] = sample_inputs([str(corpus)], text_column=None, id_column=None)
    assert not sample.whole and 0 < sample.records < 60_000 and sample.size == corpus.stat().st_size
    spec = InferSpec(
        model="m",
        model_location=None,
        model_job_id=None,
        task="classify",
        inputs=[sample.name],
        output=str(tmp_path / "out"),
        input_versions={sample.name: sample.version},
    )
    with pytest.raises(InputError, match=r"big\.txt, line 60001: bytes that are not UTF-8"):
        plan_on_worker(spec)
    # Within the sample, the same line is refused at submit.
    small = write(tmp_path / "small.txt", b"fine\ncaf\xe9\n")
    with pytest.raises(InputError, match=r"small\.txt, line 2: bytes that are not UTF-8"):
        sample_inputs([str(small)], text_column=None, id_column=None)
    # An input edited between submit and planning fails the plan, naming it.
    corpus.write_text("one line now\n")
    with pytest.raises(InputChanged, match=r"big\.txt changed after the job was submitted"):
        plan_on_worker(spec)


def test_a_sample_settles_columns_and_ids_like_planning(tmp_path):
    from bertq.sharding import sample_inputs

    table = write(tmp_path / "t.tsv", "id\tbody\n1\thello\n2\tworld\n")
    [sample] = sample_inputs([str(table)], text_column="body", id_column="id")
    assert sample.whole and sample.records == 2
    with pytest.raises(InputError, match=r"no column 'text'.*'id', 'body'"):
        sample_inputs([str(table)], text_column="text", id_column=None)
    dupes = write(tmp_path / "d.jsonl", '{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n')
    with pytest.raises(InputError, match="duplicate id '1'"):
        sample_inputs([str(dupes)], text_column=None, id_column="id")
    with pytest.raises(InputError, match="no records"):
        sample_inputs([str(write(tmp_path / "e.txt", "\n \n"))], text_column=None, id_column=None)
