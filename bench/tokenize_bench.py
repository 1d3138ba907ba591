"""Tokenising beside the model vs inline, same run, alternating rounds: sentences per second of bulk
classification with MiniLM (a two-class head) over the Reddit comments.

    .venv/bin/python bench/tokenize_bench.py [--lines 20000] [--rounds 4] [--precision bf16]

Each round classifies the same lines twice, once with every text tokenised first in the model's
thread (inline) and once with a thread tokenising the next 4,096 texts while the model runs
(ahead), in alternating order, with each text padded by itself as a bulk shard runs it
(`batch_invariant`); prints each round and the medians, and the tokenizer's own rate (tokenising
alone, in the model's thread): on a GPU whose model outruns it, that rate is the ceiling of inline
and ahead runs at about min(tokenizer rate, model rate) instead of their harmonic sum."""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpus" / "goemotions_reddit_comments.tsv"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--precision", default="bf16")
    args = parser.parse_args()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertq.models import minilm_folder
    from bertq.worker.predict import load_predictor

    with open(CORPUS, encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle, delimiter="\t")][: args.lines]
    folder = Path(tempfile.mkdtemp(prefix="minilm-classifier-"))
    AutoModelForSequenceClassification.from_pretrained(str(minilm_folder()), num_labels=2).save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(minilm_folder())).save_pretrained(folder)
    predictors = {
        mode: load_predictor(
            str(folder), "classify", device="cpu", precision=args.precision, tokenize_ahead=ahead, batch_invariant=True
        )
        for mode, ahead in (("inline", False), ("ahead", True))
    }
    predictors["inline"].predict(texts[:512])  # warm-up
    rates: dict[str, list[float]] = {"inline": [], "ahead": [], "tokenizer": []}
    for round_number in range(args.rounds):
        order = ["inline", "ahead"] if round_number % 2 == 0 else ["ahead", "inline"]
        for mode in order:
            started = time.perf_counter()
            predictors[mode].predict(texts)  # the CPU default token budget, as a shard runs it
            rates[mode].append(len(texts) / (time.perf_counter() - started))
        started = time.perf_counter()
        predictors["inline"]._tokenize(texts)
        rates["tokenizer"].append(len(texts) / (time.perf_counter() - started))
        print(
            f"round {round_number + 1}: inline {rates['inline'][-1]:.0f}/s, ahead {rates['ahead'][-1]:.0f}/s, "
            f"tokenizer alone {rates['tokenizer'][-1]:.0f}/s",
            flush=True,
        )
    inline, ahead = statistics.median(rates["inline"]), statistics.median(rates["ahead"])
    print(
        f"{len(texts)} comments, {args.precision}: median inline {inline:.0f}/s, ahead {ahead:.0f}/s, ratio "
        f"{ahead / inline:.3f}; the tokenizer alone {statistics.median(rates['tokenizer']):.0f}/s"
    )


if __name__ == "__main__":
    main()
