"""A job function runs in-process with an in-memory context: no Redis, no worker, no job row."""

from __future__ import annotations

import json
from pathlib import Path

from bertq.specs import build_evaluate_spec, build_finetune_spec
from bertq.worker.context import LocalContext, call_local


def test_finetune_then_evaluate_run_locally_and_report_what_a_worker_would(tiny_model, tiny_data, tmp_path):
    train, dev = tiny_data
    spec = build_finetune_spec(
        model=str(tiny_model), task="sst2", train=str(train), eval=str(dev), epochs=1, max_length=32, batch_size=16
    )
    trained = LocalContext(workdir=tmp_path / "finetune", job_id=1)
    result = call_local("finetune", spec.to_dict(), trained)

    [(kind, checkpoint)] = [a for a in trained.reported_artifacts if a[0] == "checkpoint"]
    assert Path(checkpoint, "model.safetensors").is_file()
    assert json.loads(Path(checkpoint, "bertq_spec.json").read_text())["task"] == "sst2"
    assert 0.0 <= trained.latest_metrics()["eval_accuracy"] <= 1.0
    assert trained.reported_progress and result
    assert "fine-tune" in (trained.workdir / "job.log").read_text()

    evaluate = build_evaluate_spec(model=str(checkpoint), task="sst2", data=str(dev), latency_samples=5, max_length=32)
    measured = LocalContext(workdir=tmp_path / "evaluate", job_id=2)
    call_local("evaluate", evaluate.to_dict(), measured)
    metrics = measured.latest_metrics()
    assert {"accuracy", "latency_p50_ms", "throughput_per_s", "size_mb"} <= set(metrics)
    # Same checkpoint, same data: the evaluate job scores what the fine-tune's best epoch scored.
    assert abs(metrics["accuracy"] - trained.latest_metrics()["eval_accuracy"]) < 1e-9
