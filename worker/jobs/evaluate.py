"""Evaluate: a trained model's task metrics and the numbers a deployer needs, on one device and
precision: parameters, size of the weights as served, peak memory while serving, batch-1 latency
(p50/p95) over real inputs, and batched throughput. Device, precision and library versions are
stored with them, so numbers from different machines are never mixed silently.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import transformers

from bertq.errors import BertqError
from bertq.specs import EvaluateSpec
from bertq.worker.context import memory_mb
from bertq.worker.families import latency_sample, worker_family
from bertq.worker.inference import prepare_model, run_model
from bertq.worker.loading import best_device, device_name, load_tokenizer, load_trained, set_policy
from bertq.worker.runner import JobContext

WARMUP_CALLS = 10


def run_evaluate(spec_values: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    spec = EvaluateSpec.from_dict(spec_values)
    # A job's checkpoint through the context: from the artifact store, its sha256 is checked.
    location = (ctx.checkpoint_of(spec.model_job_id) if spec.model_job_id else None) or spec.model_location
    if location is None:
        raise BertqError(f"job {spec.model_job_id} recorded no checkpoint to evaluate")
    device = resolve_device(spec.device, spec.precision)
    ctx.log.info("evaluate %s (%s) on %s: %s on %s", spec.model, location, spec.data, spec.precision, device)
    ctx.progress(0.05, force=True, phase="measuring in a fresh process")
    # A fresh process, so that its peak memory is the serving's alone, not what this worker process
    # kept from earlier jobs (a prefork child may have trained a model just before).
    probe = subprocess.run(
        [sys.executable, "-m", "bertq.worker.jobs.evaluate"],
        input=json.dumps({**spec_values, "model_location": location, "device": device}),
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        lines = [line for line in probe.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else f"the measuring process exited with status {probe.returncode}"
        raise BertqError(last.removeprefix("bertq.errors.BertqError: "))
    measured = json.loads(probe.stdout.strip().splitlines()[-1])
    ctx.metrics(measured["metrics"], split="eval")
    ctx.log.info("evaluation: %s %s", measured["metrics"], measured["result"])
    return measured["result"]


def resolve_device(device: str, precision: str) -> str:
    """`auto`: the device of this worker (cuda when it has one); int8 (dynamic quantisation) is the CPU's."""
    if device != "auto":
        return device
    return "cpu" if precision == "int8" else best_device()


def measure_model(spec: EvaluateSpec) -> dict[str, Any]:
    """Task metrics and deployment numbers of `spec.model_location`, measured in this process."""
    spec = replace(spec, device=resolve_device(spec.device, spec.precision))
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise BertqError(
            "--device cuda, but this worker has no CUDA device; submit to a GPU worker's queue (--queue gpu)"
        )
    location = spec.model_location
    assert location is not None
    runtime_mb = memory_mb("VmRSS")  # torch and transformers loaded, no model yet: the runtime's baseline
    load_before = os.getloadavg()[0]
    tokenizer = load_tokenizer(location, family=spec.family)
    model = load_trained(location, spec.family)
    family = worker_family(spec.family)
    labels = spec.labels or family.trained_labels(location, model.config)
    examples = family.read_examples(spec.data, spec=spec, side="eval")
    evaluation = family.eval_set(examples, tokenizer, spec, labels)
    params = sum(p.numel() for p in model.parameters())
    served = prepare_model(model, precision=spec.precision, device=spec.device)
    pad_id = tokenizer.pad_token_id or 0
    if spec.device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def run(features: dict[str, list], batch_size: int) -> list[dict[str, np.ndarray]]:
        return run_model(
            served,
            features,
            pad_id=pad_id,
            device=spec.device,
            precision=spec.precision,
            batch_size=batch_size,
            outputs=evaluation.outputs,
        )

    # Throughput: every example, batched and length-sorted, after one warm-up batch. The same pass
    # gives the task metrics, so they describe exactly what was timed.
    run({k: v[: spec.batch_size] for k, v in evaluation.features.items()}, spec.batch_size)
    started, cpu_started = time.perf_counter(), time.process_time()
    outputs = run(evaluation.features, spec.batch_size)
    _synchronize(spec.device)
    wall = time.perf_counter() - started
    throughput = evaluation.num_examples / wall
    # CPU seconds this process got per wall second, per thread: well below 1 on a CPU run means other
    # work took the cores while this measured (the report warns when candidates differ).
    cpu_share = (time.process_time() - cpu_started) / wall / max(torch.get_num_threads(), 1)
    task_metrics = evaluation.score(outputs)

    # Latency: one request at a time, tokenisation included, over a seeded sample of real inputs.
    sample = latency_sample(evaluation.num_examples, spec.latency_samples, spec.seed)
    for index in sample[:WARMUP_CALLS]:  # warm-up calls are not timed
        run(evaluation.example_features(index), 64)
    timings = []
    for index in sample:
        started = time.perf_counter()
        run(evaluation.example_features(index), 64)
        _synchronize(spec.device)
        timings.append((time.perf_counter() - started) * 1000)

    device_used_mb: float | None = None
    if spec.device == "cuda":
        # The caching allocator's peak reservation (what the process held, not only live tensors), and
        # the device's own view (mem_get_info: context and every process on it included).
        peak_mb = torch.cuda.max_memory_reserved() / 1e6
        free, total = torch.cuda.mem_get_info()
        device_used_mb = (total - free) / 1e6
    else:
        peak_mb = memory_mb("VmHWM")
    metrics = {
        **task_metrics,
        "params": float(params),
        "size_mb": _served_size_mb(served, spec.precision),
        "peak_memory_mb": peak_mb,
        # Above what the runtime alone holds (CPU); the allocator's peak is the model's alone (CUDA).
        "peak_memory_above_runtime_mb": peak_mb - runtime_mb if spec.device != "cuda" else peak_mb,
        "latency_p50_ms": float(np.percentile(timings, 50)),
        "latency_p95_ms": float(np.percentile(timings, 95)),
        "throughput_per_s": float(throughput),
        **({"device_memory_used_mb": device_used_mb} if device_used_mb is not None else {}),
    }
    result = {
        "device": spec.device,
        "device_name": device_name(spec.device),
        "precision": spec.precision,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "model_location": location,
        "examples": evaluation.num_examples,
        "latency_samples": len(timings),
        "threads": torch.get_num_threads(),
        "machine_load": round(max(load_before, os.getloadavg()[0]), 2),
        "cpu_share": round(cpu_share, 3),
        "peak_memory": "peak reserved by the CUDA caching allocator (device_memory_used_mb: the device's own view, from mem_get_info)"
        if spec.device == "cuda"
        else "peak RSS of a fresh serving process",
    }
    return {"metrics": metrics, "result": result}


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _served_size_mb(model: Any, precision: str) -> float:
    """Bytes of the weights as served, serialised: int8 through torch.save (quantised packed
    weights), the rest as safetensors in their serving dtype."""
    if precision == "int8":
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        return buffer.tell() / 1e6
    from safetensors.torch import save

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        tensors[name] = (tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor).contiguous()
    # Tied weights share storage; safetensors refuses duplicates, so count each storage once.
    seen: dict[int, str] = {}
    unique = {}
    for name, tensor in tensors.items():
        key = tensor.untyped_storage().data_ptr()
        if key not in seen:
            seen[key] = name
            unique[name] = tensor
    return len(save(unique)) / 1e6


if __name__ == "__main__":  # the measuring process: spec JSON in, measurements JSON out (last line)
    values = json.loads(sys.stdin.read())
    set_policy(values)
    print(json.dumps(measure_model(EvaluateSpec.from_dict(values))))
