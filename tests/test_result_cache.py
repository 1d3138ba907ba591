"""The result cache of bulk inference: a second night runs only the texts it has not seen, and its
output is byte for byte what a run without the cache writes."""

from __future__ import annotations

import json
from pathlib import Path


def _parts(folder: Path) -> bytes:
    manifest = json.loads((folder / "manifest.json").read_text())
    return b"".join((folder / entry["path"]).read_bytes() for entry in manifest["files"])


def _shard_metrics(bertq, job: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    totals: dict[str, float] = {}
    for child in bertq.json("show", str(job))["children"]:
        if child["kind"] == "infer_shard":
            for name, value in bertq.json("show", str(child["id"]))["metrics"].items():
                totals[name] = totals.get(name, 0.0) + value
    return totals


def test_a_second_night_runs_only_new_and_edited_texts_and_writes_the_same_output(bertq, tiny_classifier, tmp_path):
    bertq.start_worker()
    night1 = [
        f"review {i}: the film was {'good' if i % 3 else 'dull'} and {'long' if i % 5 else 'fun'}" for i in range(300)
    ]
    night2 = [*night1[:290], *(f"{text} (edited)" for text in night1[290:]), *(f"a new review {i}" for i in range(30))]

    def run(lines: list[str], name: str, *flags: str) -> tuple[int, Path]:
        corpus = tmp_path / name / "corpus.txt"  # one file name: record ids are <file name>:<line>
        corpus.parent.mkdir()
        corpus.write_text("\n".join(lines) + "\n")
        out = tmp_path / f"out-{name}"
        job = json.loads(
            bertq.run("submit", "infer", "--model", str(tiny_classifier), "--task", "classify", "--input", str(corpus),
                      "--output", str(out), "--shards", "2", "--precision", "fp32", "--all-scores", "--json", *flags,
                      check=True).stdout
        )["id"]  # fmt: skip
        assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0, bertq.json("show", str(job))["error"]
        return job, out

    first, _ = run(night1, "night1", "--cache")
    assert _shard_metrics(bertq, first) | {"cache_hits": 0.0} == _shard_metrics(bertq, first)  # all misses
    assert _shard_metrics(bertq, first)["cache_misses"] == 300
    second, cached = run(night2, "night2", "--cache", "--changed-only")
    counts = _shard_metrics(bertq, second)
    assert (counts["cache_hits"], counts["cache_misses"]) == (290, 40)  # 10 edited + 30 new
    # --changed-only: beside the full output, delta files of exactly the new and edited lines' records.
    manifest = json.loads((cached / "manifest.json").read_text())
    assert manifest["delta_records"] == 40 and len(manifest["delta"]) == 2
    delta = [json.loads(line) for d in manifest["delta"] for line in (cached / d["path"]).read_text().splitlines()]
    assert [r["id"] for r in delta] == [f"corpus.txt:{n}" for n in range(291, 331)]
    full = {json.loads(line)["id"]: line for line in _parts(cached).decode().splitlines()}
    assert all(full[r["id"]] == json.dumps(r, ensure_ascii=False) for r in delta)  # the same records, byte for byte
    refused = bertq.run("submit", "infer", "--model", str(tiny_classifier), "--task", "classify", "--input",
                        str(tmp_path / "night1" / "corpus.txt"), "--output", str(tmp_path / "o"), "--changed-only")  # fmt: skip
    assert refused.returncode == 2 and "add --cache" in refused.stderr
    _, uncached = run(night2, "night2-plain", "--no-cache")
    assert _parts(cached) == _parts(uncached)  # byte for byte: ids, order, values

    # Another precision is another key: nothing is found (the model's outputs would differ).
    third, _ = run(night2, "night2-bf16", "--cache", "--precision", "bf16")
    assert _shard_metrics(bertq, third)["cache_hits"] == 0
    stats = json.loads(bertq.run("cache", "stats", "--json", check=True).stdout)
    assert len(stats["keys"]) == 2 and sum(k["entries"] for k in stats["keys"].values()) == 340 + 330

    # --precision auto: the first shard's decision is stored and every later shard and night reuses it,
    # so the shards of one model never split the cache between two precisions.
    run(night1, "auto-night1", "--cache", "--precision", "auto")
    again, _ = run(night1, "auto-night2", "--cache", "--precision", "auto", "--shards", "3")
    assert _shard_metrics(bertq, again)["cache_hits"] == 300


def test_a_half_written_cache_file_is_skipped_and_settings_change_the_key(tmp_path):
    from dataclasses import replace

    from bertq.bulk import InferSpec
    from bertq.config import load_settings
    from bertq.result_cache import ResultCache, text_key

    settings = load_settings({"BERTQ_HOME": str(tmp_path / "home")})
    spec = InferSpec(model="m", model_location=None, model_job_id=None, task="classify", inputs=[], output="o")
    cache = ResultCache.open(settings, spec, "weights-digest", "fp32")
    cache.add({text_key("seen"): '{"label": "positive"}'}, "part-1-00000-a1.parquet")
    Path(cache.folder, ".part-1-00001-a1.parquet.partial").write_bytes(b"PAR1 cut short")  # a killed writer's
    assert cache.lookup(["new", "seen"]) == {1: '{"label": "positive"}'}
    for changed in (replace(spec, labels=["a", "b"]), replace(spec, all_scores=True), replace(spec, task="embed")):
        assert ResultCache.open(settings, changed, "weights-digest", "fp32").key != cache.key
    assert ResultCache.open(settings, spec, "other-weights", "fp32").key != cache.key


_WRITER = """
import sys
from bertq.bulk import InferSpec
from bertq.config import load_settings
from bertq.result_cache import ResultCache, text_key

home, writer, files, per_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
spec = InferSpec(model="m", model_location=None, model_job_id=None, task="classify", inputs=[], output="o")
cache = ResultCache.open(load_settings({"BERTQ_HOME": home}), spec, "weights-digest", "fp32")
print("ready", flush=True)
sys.stdin.readline()  # all writers start together
for f in range(files):
    cache.add({text_key(f"w{writer} f{f} t{t}"): f'{{"label": "{writer}"}}' for t in range(per_file)},
              f"part-{writer}-{f:05d}-a1.parquet")
    print("published", f, flush=True)
"""


def _writers(home: Path, count: int, files: int, per_file: int, first: int = 0) -> list:  # type: ignore[type-arg]
    import subprocess
    import sys

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(home), str(w), str(files), str(per_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for w in range(first, first + count)
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return procs


def test_shards_writing_one_cache_at_once_and_a_writer_killed_midway_leave_it_whole(tmp_path):
    """Shards of one model on several workers add to the same cache key at the same moment, and a
    worker may be SIGKILLed while it writes: every published file is whole, and readers skip the rest."""
    import signal
    import time

    from bertq.bulk import InferSpec
    from bertq.config import load_settings
    from bertq.result_cache import ResultCache, text_key

    home = tmp_path / "home"
    spec = InferSpec(model="m", model_location=None, model_job_id=None, task="classify", inputs=[], output="o")
    writers = _writers(home, 4, 3, 4000)
    for proc in writers:
        assert proc.wait(timeout=120) == 0
    cache = ResultCache.open(load_settings({"BERTQ_HOME": str(home)}), spec, "weights-digest", "fp32")
    texts = [f"w{w} f{f} t{t}" for w in range(4) for f in range(3) for t in range(4000)]
    found = cache.lookup([*texts, "never written"])
    assert len(found) == len(texts) and found[0] == '{"label": "0"}' and found[len(texts) - 1] == '{"label": "3"}'
    assert text_key("never written") not in found

    # Killed while adding: a writer of large files, SIGKILLed while it writes its third.
    [victim] = _writers(home, 1, 50, 60000, first=9)
    third = Path(cache.folder) / ".part-9-00002-a1.parquet.partial"
    while not third.exists():
        time.sleep(0.001)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert third.exists()  # cut short: it was never published
    assert sorted(p.name for p in Path(cache.folder).glob("part-9-*")) == [
        "part-9-00000-a1.parquet",
        "part-9-00001-a1.parquet",
    ]
    again = ResultCache.open(load_settings({"BERTQ_HOME": str(home)}), spec, "weights-digest", "fp32")
    found = again.lookup([f"w9 f{f} t{t}" for f in range(2) for t in range(0, 60000, 997)])
    assert len(found) == len(range(0, 60000, 997)) * 2  # the victim's published files read whole
    assert len(again.lookup(texts)) == len(texts)  # and nothing earlier was harmed
