"""The GPU check: every GPU path of bertq, through a real worker, on one device; one table.

    bash bench/gpu_check.sh            # on a machine with a CUDA GPU
    bash bench/gpu_check.sh --dry      # anywhere: the same steps on the CPU, tiny sizes (CI runs it)

Starts an embedded Redis and one `bertq worker` in a fresh BERTQ_HOME, then through the CLI:
1. fine-tunes MiniLM (the `minilm` alias; --dry: a 2-layer, 32-wide BERT) on SST-2 (a --train-rows
   slice of ../shared/data/sst2): the precision the worker chose (bf16 on Ampere and later, fp16
   with loss scaling before), wall time, accuracy;
2. evaluates the fine-tuned model at fp32, fp16 and bf16: accuracy, throughput, p50 latency, peak
   memory (the caching allocator's peak reservation on a GPU);
3. classifies --sentences sentences (SST-2's sentences, repeated) in bulk with the GPU token budget:
   sentences/s, padding efficiency (real tokens / tokens run with padding) and model FLOP
   utilisation (2 x parameters x real tokens per second, over the device's peak dense 16-bit rate;
   not printed for a device whose peak this script does not know, nor on a CPU);
4. distils the fine-tuned model into a 3-layer student (--dry: 1 layer) cut from it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import minilm_worker

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BERTQ = [sys.executable, "-m", "bertq.cli"]

PEAK_16BIT_TFLOPS = {  # dense bf16/fp16 tensor-core peaks from the vendors' data sheets (SXM where both exist)
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "A10": 125.0,
    "L40S": 362.0,
    "L4": 121.0,
    "V100": 125.0,
    "T4": 65.0,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry", action="store_true", help="CPU, tiny model and sizes (what CI runs)")
    parser.add_argument("--sentences", type=int, default=None, help="bulk sentences [100000; --dry 2000]")
    parser.add_argument("--train-rows", type=int, default=None, help="SST-2 training rows [20000; --dry 160]")
    args = parser.parse_args()

    import torch

    from bertq.demo import write_tiny_model

    on_gpu = torch.cuda.is_available() and not args.dry
    if not on_gpu and not args.dry:
        sys.exit("no CUDA device here: run on a GPU machine, or pass --dry for the CPU walk-through")
    sentences = args.sentences or (100_000 if on_gpu else 2000)
    train_rows = args.train_rows or (20_000 if on_gpu else 160)
    device_name = torch.cuda.get_device_name(0) if on_gpu else "cpu"
    queue = "gpu" if on_gpu else "cpu"

    with tempfile.TemporaryDirectory(prefix="bertq-gpu-check-") as scratch:
        work = Path(scratch)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BERTQ_")},
            "BERTQ_HOME": str(work / "home"),
            "BERTQ_ALLOWED_ROOTS": f"{work}:{SHARED}",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_VERBOSITY": "error",
        }
        model = "minilm" if on_gpu else str(write_tiny_model(work / "tiny"))
        train, dev = _sst2(work / "sst2", train_rows, dry=not on_gpu)
        worker = subprocess.Popen(
            [*BERTQ, "worker", "--queues", queue, "--concurrency", "1"],
            env=env,
            stdout=open(work / "worker.log", "w"),  # noqa: SIM115 - open for the worker's life
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        rows: list[tuple[str, str, str]] = [("device", device_name, "")]
        try:

            def bertq(*command: str) -> dict[str, Any]:
                done = subprocess.run([*BERTQ, *command, "--json"], env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"bertq {' '.join(command)} failed:\n{done.stderr}\n{_tail(work / 'worker.log')}")
                return dict(json.loads(done.stdout))

            def run(*command: str) -> dict[str, Any]:
                job = bertq("submit", *command, "--queue", queue)["id"]
                waited = subprocess.run([*BERTQ, "wait", str(job), "--timeout", "3600"], env=env, capture_output=True)
                view = bertq("show", str(job))
                if waited.returncode != 0:
                    sys.exit(
                        f"job {job} ({command[0]}) {view['status']}: {view['error']}\n{_tail(work / 'worker.log')}"
                    )
                return view

            # 1. Fine-tune.
            started = time.monotonic()
            tuned = run("finetune", "--model", model, "--task", "sst2", "--train", str(train), "--eval", str(dev),
                        "--epochs", "1", "--batch-size", "32", "--max-length", "64" if on_gpu else "32",
                        "--no-evaluate")  # fmt: skip
            result = tuned["result"]
            rows.append(
                (
                    "fine-tune",
                    f"{result['precision']}, {train_rows} rows, 1 epoch: {time.monotonic() - started:.1f} s wall, "
                    f"train {result['train_runtime_s']:.1f} s",
                    f"accuracy {result['eval_accuracy']:.4f}",
                )
            )
            # 2. Evaluate at each precision.
            for precision in ("fp32", "fp16", "bf16"):
                measured = run("evaluate", "--model", str(tuned["id"]), "--data", str(dev), "--precision", precision,
                               "--latency-samples", "50" if on_gpu else "5")  # fmt: skip
                m = measured["metrics"]
                rows.append(
                    (
                        f"evaluate {precision}",
                        f"{m['throughput_per_s']:.0f}/s, p50 {m['latency_p50_ms']:.2f} ms, "
                        f"peak {m.get('peak_memory_mb', 0):.0f} MB",
                        f"accuracy {m['accuracy']:.4f}",
                    )
                )
            # 3. Bulk classify.
            corpus = _corpus(work / "corpus.txt", sentences)
            bulk = run("infer", "--model", str(tuned["id"]), "--task", "classify", "--input", str(corpus),
                       "--output", str(work / "labels"))  # fmt: skip
            shards = [bertq("show", str(c["id"])) for c in bulk["children"] if c["kind"] == "infer_shard"]
            tokens = sum(s["metrics"]["tokens"] for s in shards)
            padded = sum(s["metrics"]["padded_tokens"] for s in shards)
            seconds = sum(s["result"]["seconds"] for s in shards)  # one worker: the shards ran one after another
            rate = bulk["result"]["records"] / seconds
            params = _parameters(tuned["result"]["checkpoint"])
            peak = next((v for k, v in PEAK_16BIT_TFLOPS.items() if k in device_name), None) if on_gpu else None
            mfu = f", MFU {2 * params * tokens / seconds / (peak * 1e12):.1%} of {peak:g} TFLOPS" if peak else ""
            rows.append(
                (
                    "bulk classify",
                    f"{bulk['result']['records']} sentences in {len(shards)} shards: {rate:.0f} sentences/s "
                    f"({seconds:.1f} s running), precision {shards[0]['result']['precision']['chosen']}",
                    f"padding efficiency {tokens / padded:.1%}{mfu}",
                )
            )
            # 4. Distil.
            distilled = run("distill", "--teacher", str(tuned["id"]), "--student", "teacher", "--student-layers",
                            "3" if on_gpu else "1", "--epochs", "1", "--batch-size", "32",
                            "--max-length", "64" if on_gpu else "32")  # fmt: skip
            summary = distilled["summary"]
            rows.append(
                (
                    "distil",
                    f"student {summary['size_ratio']:.2f}x the teacher's size, {summary['speedup']:.2f}x its throughput",
                    f"{summary['metric']} {summary['student_metric']:.4f} (teacher {summary['teacher_metric']:.4f}, "
                    f"retention {summary['retention']:.1%})",
                )
            )
        finally:
            minilm_worker.stop(env, worker)  # the worker's process group, then the embedded Redis
    print(f"\n| check ({'dry run, CPU' if not on_gpu else 'GPU'}) | measured | quality |\n|---|---|---|")
    for name, measured, quality in rows:
        print(f"| {name} | {measured} | {quality} |")


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def _sst2(folder: Path, rows: int, *, dry: bool) -> tuple[Path, Path]:
    folder.mkdir(parents=True)
    if dry:
        from bertq.demo import write_demo_data

        return write_demo_data(folder, train=rows, dev=48)
    lines = (SHARED / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()
    (folder / "train.tsv").write_text("\n".join(lines[: rows + 1]) + "\n", encoding="utf-8")
    return folder / "train.tsv", SHARED / "sst2" / "dev.tsv"


def _corpus(path: Path, count: int) -> Path:
    sentences = [
        line.split("\t")[0]
        for line in (SHARED / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
        if line.strip()
    ]
    path.write_text("\n".join(sentences[i % len(sentences)] for i in range(count)) + "\n", encoding="utf-8")
    return path


def _parameters(checkpoint: str) -> int:
    from transformers import AutoModelForSequenceClassification

    return sum(p.numel() for p in AutoModelForSequenceClassification.from_pretrained(checkpoint).parameters())


if __name__ == "__main__":
    main()
