"""int8 on the CPU: torch's dynamic quantisation (torch.ao, deprecated) against torchao's quantize_
(Int8DynamicActivationInt8Weight and Int8WeightOnly), and fp32, on a fine-tuned-shape encoder stack.

    .venv/bin/pip install torchao && .venv/bin/python bench/int8_bench.py [--rounds 5]

Each round times every variant once, in turn (alternating, so the machine's drift hits each alike);
prints the median seconds per forward pass and the ratio to fp32, and the largest difference of the
outputs from fp32's."""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=2048, help="tokens a batch (batch x length)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    # MiniLM's shape: 6 layers of 384 -> 1536 -> 384 feed-forward plus the 4 attention projections.
    layers = []
    for _ in range(6):
        layers += [torch.nn.Linear(384, 384) for _ in range(4)]
        layers += [torch.nn.Linear(384, 1536), torch.nn.GELU(), torch.nn.Linear(1536, 384)]
    fp32 = torch.nn.Sequential(*layers).eval()
    x = torch.randn(args.rows, 384)
    variants = {"fp32": fp32}
    variants["torch.ao dynamic int8"] = torch.ao.quantization.quantize_dynamic(
        copy.deepcopy(fp32), {torch.nn.Linear}, dtype=torch.qint8
    )
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

        for name, config in (
            ("torchao int8 dynamic activation + weight", Int8DynamicActivationInt8WeightConfig()),
            ("torchao int8 weight-only", Int8WeightOnlyConfig()),
        ):
            model = copy.deepcopy(fp32)
            quantize_(model, config)
            variants[name] = model
    except ImportError:
        print("torchao is not installed: `.venv/bin/pip install torchao` to compare it")
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        reference = fp32(x)
        errors = {name: float((model(x) - reference).abs().max()) for name, model in variants.items()}  # warm-up too
        for _ in range(args.rounds):
            for name, model in variants.items():
                started = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - started)
    base = statistics.median(times["fp32"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rows} rows, {args.rounds} rounds")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:42s} {median * 1000:8.1f} ms  {base / median:5.2f}x fp32's speed  max |diff| {errors[name]:.4f}")


if __name__ == "__main__":
    main()
