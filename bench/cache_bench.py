"""Nightly annotation with the result cache: what night 2 costs when the corpus barely changed.

    python bench/cache_bench.py [--lines N]

One worker (embedded Redis, SQLite, a fresh BERTQ_HOME), MiniLM with a two-class head (untrained:
speed is the point). Night 1: the Reddit comments of ../shared/data/corpus (--lines of them, all by
default: 54,263), cache empty. Night 2: the same corpus with 1% of the lines edited and 5% new lines
(from wikitext2_test.raw) appended, with the cache; then night 2 again with --no-cache, as the
baseline and to check the cached output is byte for byte the same. Prints each job's wall time
(created -> finished) and the ratios.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BERTQ = [sys.executable, "-m", "bertq.cli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=None)
    args = parser.parse_args()
    with open(SHARED / "corpus" / "goemotions_reddit_comments.tsv", encoding="utf-8") as handle:
        texts = [
            r["text"].replace("\n", " ").strip() for r in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        ]
    texts = [t for t in texts if t][: args.lines]
    wiki = [
        line.strip() for line in (SHARED / "corpus" / "wikitext2_test.raw").read_text(encoding="utf-8").splitlines()
    ]
    wiki = [line for line in wiki if len(line) > 20 and not line.startswith("=")]
    edited = {i: f"{texts[i]} (edited)" for i in range(0, len(texts), 100)}  # 1%
    night2 = [edited.get(i, text) for i, text in enumerate(texts)] + wiki[: len(texts) // 20]  # + 5%

    root = Path(tempfile.mkdtemp(prefix="bertq-cache-bench-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BERTQ_")},
        "BERTQ_HOME": str(root / "home"),
        "BERTQ_ALLOWED_ROOTS": str(root),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertq.models import minilm_folder

    model = root / "minilm-cls"
    AutoModelForSequenceClassification.from_pretrained(minilm_folder(), num_labels=2).save_pretrained(model)
    AutoTokenizer.from_pretrained(minilm_folder()).save_pretrained(model)
    worker = subprocess.Popen([*BERTQ, "worker", "--concurrency", "1"], env=env, stdout=open(root / "worker.log", "w"),  # noqa: SIM115
                              stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def run(lines: list[str], name: str, *flags: str) -> tuple[float, dict]:
        corpus = root / name / "comments.txt"
        corpus.parent.mkdir()
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        submitted = subprocess.run([*BERTQ, "submit", "infer", "--model", str(model), "--task", "classify", "--input",
                                    str(corpus), "--output", str(root / f"out-{name}"), "--shards", "2", "--precision", "bf16", "--json",
                                    *flags], env=env, capture_output=True, text=True, check=True)  # fmt: skip
        job = json.loads(submitted.stdout)["id"]
        subprocess.run([*BERTQ, "wait", str(job), "--timeout", "7200"], env=env, capture_output=True, check=True)
        view = json.loads(subprocess.run([*BERTQ, "show", str(job), "--json"], env=env, capture_output=True, text=True,
                                         check=True).stdout)  # fmt: skip
        seconds = (
            datetime.fromisoformat(view["finished_at"]) - datetime.fromisoformat(view["created_at"])
        ).total_seconds()
        hits = misses = 0
        for child in view["children"]:
            metrics = json.loads(subprocess.run([*BERTQ, "show", str(child["id"]), "--json"], env=env,
                                                capture_output=True, text=True, check=True).stdout)["metrics"]  # fmt: skip
            hits += int(metrics.get("cache_hits", 0))
            misses += int(metrics.get("cache_misses", 0))
        print(f"{name}: {len(lines)} lines, {seconds:.1f} s, cache hits {hits}, misses {misses}", flush=True)
        return seconds, view

    try:
        time.sleep(5)
        first, _ = run(texts, "night1", "--cache")
        second, cached = run(night2, "night2", "--cache")
        plain, uncached = run(night2, "night2-no-cache", "--no-cache")

        def parts(view: dict) -> bytes:
            folder = Path(view["result"]["output"])
            manifest = json.loads((folder / "manifest.json").read_text())
            return b"".join((folder / f["path"]).read_bytes() for f in manifest["files"])

        print(f"night 2 with the cache: {second / first:.3f} of night 1's wall time, {second / plain:.3f} of night 2 "
              f"without it; outputs byte for byte equal: {parts(cached) == parts(uncached)}")  # fmt: skip
    finally:
        subprocess.run(["pkill", "-TERM", "-g", str(worker.pid)], check=False)
        worker.wait(timeout=60)


if __name__ == "__main__":
    main()
