"""Bulk-inference benchmark: the tutorial's loop, the HF pipeline batched, and bertq's infer path.

    python bench/infer_bench.py --model CHECKPOINT [--lines 4000] [--loop-lines 600]

Same model, same texts (the first lines of a real corpus), same machine, one run: (b) and each (c)
setting take turns for --rounds rounds, and each path's median is reported. Prints sentences per
second, the ratio to (b) `pipe(texts, batch_size=32)`, and how often each setting's labels agree
with fp32's. CHECKPOINT is a classifier folder (e.g. a `bertq submit finetune` job's checkpoint).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpus" / "goemotions_reddit_comments.tsv"


def read_texts(path: Path, count: int) -> list[str]:
    if path.suffix in (".txt", ".raw"):  # plain text: every non-empty line is a record
        lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
        return [line for line in lines if line][:count]
    with open(path, encoding="utf-8") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row["text"] for _, row in zip(range(count), rows)]


def timed(function, texts):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    labels = function(texts)
    return len(texts) / (time.perf_counter() - started), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--corpus", default=str(CORPUS))
    parser.add_argument("--lines", type=int, default=4000, help="texts for (b) and (c)")
    parser.add_argument("--loop-lines", type=int, default=600, help="texts for the slow loop (a)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (b) and (c) in turn; medians are reported")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--attention",
        default=None,
        choices=["sdpa", "eager"],
        help="attention kernels for (c) [bertq's choice for the device]",
    )
    args = parser.parse_args()

    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from bertq.worker.inference import prepare_model
    from bertq.worker.predict import CPU_ATTENTION, Predictor, agreement, serve_model

    texts = read_texts(Path(args.corpus), args.lines)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model).to(args.device).eval()
    device_index = 0 if args.device == "cuda" else -1
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=device_index, truncation=True)
    print(
        f"model {args.model}; {len(texts)} texts from {args.corpus}; device {args.device}; torch threads {torch.get_num_threads()}"
    )

    pipe(texts[:64], batch_size=32)  # warm-up for every path below
    rate_a, _ = timed(lambda ts: [pipe(t)[0]["label"] for t in ts], texts[: args.loop_lines])

    from bertq.tasks import DEFAULT_TOKEN_BUDGET

    budget = DEFAULT_TOKEN_BUDGET["cuda" if args.device == "cuda" else "cpu"]  # what an infer job uses
    attention = args.attention or (CPU_ATTENTION if args.device == "cpu" else None)
    options = {"attn_implementation": attention} if attention else {}
    settings = [
        ("fp32", True),
        ("fp32", False),
        *[(p, True) for p in (("bf16", "int8") if args.device == "cpu" else ("bf16", "fp16"))],
    ]
    predictors = {}
    for precision, serving_layers in settings:
        fresh = AutoModelForSequenceClassification.from_pretrained(args.model, **options)
        served = (
            serve_model(fresh, task="classify", precision=precision, device=args.device)
            if serving_layers
            else prepare_model(fresh, precision=precision, device=args.device)
        )  # the model's own layers
        name = f"(c) bertq infer path, {precision}" if serving_layers else f"    same, {precision}, plain layers"
        predictors[name] = Predictor(  # batch-invariant, as bulk inference jobs run it
            task="classify",
            model=served,
            tokenizer=tokenizer,
            device=args.device,
            precision=precision,
            batch_invariant=True,
        )
        predictors[name].predict(texts[:256])  # warm-up

    # The machine's speed drifts from minute to minute: each round runs (b) and every (c) once, in
    # turn, and the table gives each path's median over the rounds.
    b_name = "(b) pipe(texts, batch_size=32)"
    rates: dict[str, list[float]] = {b_name: []}
    answers: dict[str, list] = {}
    for round_number in range(args.rounds):
        rate, answers[b_name] = timed(lambda ts: [r["label"] for r in pipe(ts, batch_size=32)], texts)
        rates[b_name].append(rate)
        for name, predictor in predictors.items():
            rate, answers[name] = timed(lambda ts, p=predictor: p.predict(ts, token_budget=budget), texts)
            rates.setdefault(name, []).append(rate)
        print(f"round {round_number + 1}: " + ", ".join(f"{name.strip()} {r[-1]:.1f}/s" for name, r in rates.items()))

    reference = answers["(c) bertq infer path, fp32"]
    agree_b = sum(r["label"] == b for r, b in zip(reference, answers[b_name])) / len(texts)
    print(f"bertq fp32 labels agree with (b) on {agree_b:.4%} of texts")
    rate_b = statistics.median(rates[b_name])
    print(
        f"\n{'path (median of ' + str(args.rounds) + ' rounds)':<38} {'sentences/s':>12} {'vs (b)':>8} {'labels = fp32':>14}"
    )
    print(f"{'(a) [pipe(t) for t in texts]':<38} {rate_a:>12.1f} {rate_a / rate_b:>7.2f}x")
    for name, values in rates.items():
        rate = statistics.median(values)
        agree = None if name == b_name else agreement("classify", reference, answers[name])
        print(f"{name:<38} {rate:>12.1f} {rate / rate_b:>7.2f}x {'' if agree is None else f'{agree:.4%}':>14}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
