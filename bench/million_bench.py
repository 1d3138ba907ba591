"""Bulk inference at a million lines: throughput per line and peak memory against smaller runs.

    python bench/million_bench.py [--sizes 54263,100000,1000000]

One worker (embedded Redis, SQLite, a fresh BERTQ_HOME, concurrency 1), MiniLM with a two-class head
(untrained: speed is the point), `classify` in bf16, no result cache, shards planned by the default
records per shard. Each size is the Reddit comments of ../shared/data/corpus repeated with a per-copy
suffix (" #2", " #3", ...) so that every text differs. For each run it prints the job's wall time
(created -> finished), lines/s, the peak RSS of the planning job and of the largest shard job (each
job's own VmHWM, reset when it starts) and how far that rose above the pool process's size at the
job's start, the worker's main process's peak RSS (sampled every second),
and how long `bertq submit` took (it does not read the corpus). Then the ratios the issue asks for:
throughput per line of the largest run against the first, and peak RSS against the 100k run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import minilm_worker

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BERTQ = [sys.executable, "-m", "bertq.cli"]


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="54263,100000,1000000")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with open(SHARED / "corpus" / "goemotions_reddit_comments.tsv", encoding="utf-8") as handle:
        comments = [
            r["text"].replace("\n", " ").strip() for r in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        ]
    comments = [c for c in comments if c]

    root, env, model, worker = minilm_worker.start("bertq-million-")
    main_peak = {"mb": 0.0}
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(1.0):
            main_peak["mb"] = max(main_peak["mb"], rss_mb(worker.pid))

    threading.Thread(target=sample, daemon=True).start()

    def show(job: int) -> dict:
        out = subprocess.run([*BERTQ, "show", str(job), "--json"], env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    rows = []
    try:
        time.sleep(5)
        for size in sizes:
            corpus = root / f"corpus-{size}.txt"
            with open(corpus, "w", encoding="utf-8") as out:
                for i in range(size):
                    copy = i // len(comments)
                    text = comments[i % len(comments)]
                    out.write(f"{text} #{copy + 1}\n" if copy else f"{text}\n")
            main_peak["mb"] = 0.0
            clock = time.monotonic()
            submitted = subprocess.run([*BERTQ, "submit", "infer", "--model", str(model), "--task", "classify", "--input",
                                        str(corpus), "--output", str(root / f"out-{size}"), "--precision", "bf16",
                                        "--no-cache", "--json"], env=env, capture_output=True, text=True, check=True)  # fmt: skip
            submit_s = time.monotonic() - clock
            job = json.loads(submitted.stdout)["id"]
            subprocess.run([*BERTQ, "wait", str(job), "--timeout", "14400"], env=env, capture_output=True, check=True)
            view = show(job)
            seconds = (
                datetime.fromisoformat(view["finished_at"]) - datetime.fromisoformat(view["created_at"])
            ).total_seconds()
            children = [show(child["id"]) for child in view["children"]]
            plan = [c["metrics"].get("peak_rss_mb", 0.0) for c in children if c["kind"] == "infer_plan"]
            shards = [c["metrics"].get("peak_rss_mb", 0.0) for c in children if c["kind"] == "infer_shard"]
            grown = {  # each step's own growth: its peak above the pool process's size when it started
                kind: max((c["metrics"].get("peak_rss_mb", 0.0) - c["metrics"].get("rss_at_start_mb", 0.0)
                           for c in children if c["kind"] == kind), default=0.0)
                for kind in ("infer_plan", "infer_shard")
            }  # fmt: skip
            row = {
                "lines": size,
                "seconds": seconds,
                "per_s": size / seconds,
                "shards": len(shards),
                "plan_mb": max(plan, default=0.0),
                "shard_mb": max(shards, default=0.0),
                "main_mb": main_peak["mb"],
                "plan_grown_mb": grown["infer_plan"],
                "shard_grown_mb": grown["infer_shard"],
                "submit_s": submit_s,
            }
            rows.append(row)
            print(f"{size} lines: {seconds:.0f} s, {row['per_s']:.0f} lines/s, {len(shards)} shards; peak RSS: "
                  f"planner {row['plan_mb']:.0f} MB, largest shard {row['shard_mb']:.0f} MB, worker main "
                  f"{row['main_mb']:.0f} MB; above the pool process's size at the step's start: planner "
                  f"{row['plan_grown_mb']:.0f} MB, largest shard {row['shard_grown_mb']:.0f} MB; submit took "
                  f"{submit_s:.2f} s", flush=True)  # fmt: skip
            os.remove(corpus)
        first, last = rows[0], rows[-1]
        hundred = next((r for r in rows if r["lines"] == 100_000), None)
        print(f"throughput per line, {last['lines']} vs {first['lines']} lines: {last['per_s'] / first['per_s']:.3f}")
        if hundred is not None and last is not hundred:
            for key, name in (("plan_mb", "planner"), ("shard_mb", "largest shard"), ("main_mb", "worker main"),
                              ("plan_grown_mb", "planner's own growth"), ("shard_grown_mb", "largest shard's own growth")):  # fmt: skip
                print(f"peak RSS of the {name}, {last['lines']} vs 100000 lines: {last[key] / hundred[key]:.3f}")
    finally:
        sampling.set()
        minilm_worker.stop(env, worker)


if __name__ == "__main__":
    main()
