"""Nightly annotation with the result cache: what night 2 costs when the corpus barely changed.

    python bench/cache_bench.py [--lines N] [--new-lines wiki|held-out]

One worker (embedded Redis, SQLite, a fresh BERTQ_HOME), MiniLM with a two-class head (untrained:
speed is the point). Night 1: the Reddit comments of ../shared/data/corpus (--lines of them, all by
default: 54,263), cache empty. Night 2: the same corpus with 1% of the lines edited and 5% new lines
appended (wikitext2_test.raw's first non-blank lines, or with --new-lines held-out the last 1/21 of the comments,
kept out of night 1), with the cache; then night 2 again with --no-cache, as the
baseline and to check the cached output is byte for byte the same. Prints each job's wall time
(created -> finished, whole seconds) and the time from `bertq submit` to the return of `bertq wait`
(fractions of a second, both commands' start-up included), the tokens the model ran (misses only,
without padding), and the ratios: night 2's cost follows the tokens it has not seen before.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import minilm_worker

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BERTQ = [sys.executable, "-m", "bertq.cli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=None)
    parser.add_argument(
        "--new-lines",
        choices=["wiki", "held-out"],
        default="wiki",
        help="night 2's 5%% new lines: the first non-blank lines of wikitext2_test.raw (paragraphs, about 8x "
        "a comment's words, and section headings), or comments held out of night 1 (a corpus that grows with "
        "more of the same)",
    )
    args = parser.parse_args()
    with open(SHARED / "corpus" / "goemotions_reddit_comments.tsv", encoding="utf-8") as handle:
        texts = [
            r["text"].replace("\n", " ").strip() for r in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        ]
    texts = [t for t in texts if t][: args.lines]
    if args.new_lines == "wiki":
        wiki = (SHARED / "corpus" / "wikitext2_test.raw").read_text(encoding="utf-8").splitlines()
        new = [line.strip() for line in wiki if line.strip()]  # 2,891 lines; 2,183 paragraphs, 708 headings
    else:
        keep = len(texts) * 20 // 21
        texts, new = texts[:keep], texts[keep:]
    edited = {i: f"{texts[i]} (edited)" for i in range(0, len(texts), 100)}  # 1%
    added = new[: len(texts) // 20]  # + 5%
    night2 = [edited.get(i, text) for i, text in enumerate(texts)] + added
    print(f"night 2: {len(edited)} edited lines, {len(added)} new ({len(added) / len(texts):.1%})", flush=True)

    root, env, model, worker = minilm_worker.start("bertq-cache-bench-")

    def run(lines: list[str], name: str, *flags: str) -> tuple[float, dict, float, int]:
        corpus = root / name / "comments.txt"
        corpus.parent.mkdir()
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        clock = time.monotonic()
        submitted = subprocess.run([*BERTQ, "submit", "infer", "--model", str(model), "--task", "classify", "--input",
                                    str(corpus), "--output", str(root / f"out-{name}"), "--shards", "2", "--precision", "bf16", "--json",
                                    *flags], env=env, capture_output=True, text=True, check=True)  # fmt: skip
        job = json.loads(submitted.stdout)["id"]
        subprocess.run([*BERTQ, "wait", str(job), "--timeout", "7200"], env=env, capture_output=True, check=True)
        client = time.monotonic() - clock  # submit to the end of `bertq wait`, with both commands' start-up
        view = json.loads(subprocess.run([*BERTQ, "show", str(job), "--json"], env=env, capture_output=True, text=True,
                                         check=True).stdout)  # fmt: skip
        seconds = (
            datetime.fromisoformat(view["finished_at"]) - datetime.fromisoformat(view["created_at"])
        ).total_seconds()
        hits = misses = tokens = 0
        for child in view["children"]:
            metrics = json.loads(subprocess.run([*BERTQ, "show", str(child["id"]), "--json"], env=env,
                                                capture_output=True, text=True, check=True).stdout)["metrics"]  # fmt: skip
            hits += int(metrics.get("cache_hits", 0))
            misses += int(metrics.get("cache_misses", 0))
            tokens += int(metrics.get("tokens", 0))
        print(f"{name}: {len(lines)} lines, job {seconds:.0f} s (submit to wait's return: {client:.1f} s), "
              f"cache hits {hits}, misses {misses}, tokens run {tokens}", flush=True)  # fmt: skip
        return client, view, seconds, tokens

    try:
        time.sleep(5)
        first, _, first_s, first_tokens = run(texts, "night1", "--cache")
        second, cached, second_s, second_tokens = run(night2, "night2", "--cache")
        plain, uncached, _, _ = run(night2, "night2-no-cache", "--no-cache")

        def parts(view: dict) -> bytes:
            folder = Path(view["result"]["output"])
            manifest = json.loads((folder / "manifest.json").read_text())
            return b"".join((folder / f["path"]).read_bytes() for f in manifest["files"])

        print(f"night 2 with the cache: {second / first:.3f} of night 1's wall time, {second / plain:.3f} of night 2 "
              f"without it (job wall times: {second_s / first_s:.3f}); night 2 ran {second_tokens / first_tokens:.3f} "
              f"of night 1's tokens; outputs byte for byte equal: {parts(cached) == parts(uncached)}")  # fmt: skip
    finally:
        minilm_worker.stop(env, worker)


if __name__ == "__main__":
    main()
