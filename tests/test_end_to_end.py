"""The whole path through real processes: CLI -> Redis -> `bertq worker` -> SQL -> checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def submit_tiny_finetune(bertq, tiny_model: Path, tiny_data: tuple[Path, Path], *extra: str) -> int:
    train, dev = tiny_data
    result = bertq.run(
        "submit",
        "finetune",
        "--model",
        str(tiny_model),
        "--task",
        "sst2",
        "--train",
        str(train),
        "--eval",
        str(dev),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
        "--max-length",
        "32",
        "--json",
        *extra,
        check=True,
    )
    return json.loads(result.stdout)["id"]


def test_finetune_reaches_succeeded_with_metrics_and_a_loadable_checkpoint(bertq_any_db, tiny_model, tiny_data):
    bertq = bertq_any_db
    bertq.start_worker()
    job_id = submit_tiny_finetune(bertq, tiny_model, tiny_data)

    waited = bertq.run("wait", str(job_id), "--timeout", "300")
    assert waited.returncode == 0, waited.stderr
    assert "RUNNING" in waited.stderr and "step" in waited.stderr  # the progress line was shown

    view = bertq.json("show", str(job_id))
    assert view["id"] == job_id and view["kind"] == "finetune"
    assert view["status"] == "SUCCEEDED" and view["attempts"] == 1 and view["error"] is None
    assert view["progress"] == 1.0
    assert 0.0 <= view["metrics"]["eval_accuracy"] <= 1.0
    assert 0.0 <= view["metrics"]["eval_f1"] <= 1.0
    assert "train_loss" in view["metrics"]
    [checkpoint] = [a for a in view["artifacts"] if a["kind"] == "checkpoint"]
    assert len(checkpoint["sha256"]) == 64

    # The saved folder loads with transformers' Auto classes, with the label names and the spec beside it.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(checkpoint["path"])
    assert (folder / "model.safetensors").is_file()
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    logits = model(**tokenizer(["the movie was wonderful ."], return_tensors="pt")).logits
    assert tuple(logits.shape) == (1, 2)
    spec = json.loads((folder / "bertq_spec.json").read_text())
    assert spec == view["spec"] and spec["model_location"] == str(tiny_model)

    # Per-epoch evaluation rows were stored for both epochs, plus the best model's final evaluation.
    from sqlalchemy import select

    from bertq.db.models import Metric

    with bertq.sessions()() as session:
        epochs = session.scalars(
            select(Metric.epoch).where(
                Metric.job_id == job_id, Metric.name == "eval_accuracy", Metric.epoch.is_not(None)
            )
        ).all()
    assert sorted(round(e) for e in epochs) == [1, 2]

    listing = bertq.run("jobs", check=True).stdout
    assert f"{job_id}" in listing and "SUCCEEDED" in listing and "eval_accuracy=" in listing
    assert "fine-tune" in bertq.run("logs", str(job_id), check=True).stdout


def test_a_failing_job_records_why_and_wait_exits_non_zero(bertq, tiny_model, tiny_data, tmp_path):
    train, dev = tiny_data
    doomed = tmp_path / "train.tsv"
    doomed.write_text(train.read_text())
    bertq.start_worker()
    job_id = json.loads(
        bertq.run(
            "submit",
            "finetune",
            "--model",
            str(tiny_model),
            "--task",
            "sst2",
            "--train",
            str(doomed),
            "--eval",
            str(dev),
            "--max-length",
            "32",
            "--json",
            check=True,
        ).stdout
    )["id"]
    doomed.unlink()  # the data disappears after the submit-time checks
    assert bertq.run("wait", str(job_id), "--timeout", "120").returncode == 1
    view = bertq.json("show", str(job_id))
    assert view["status"] == "FAILED"
    assert str(doomed) in view["error"] and "Traceback" in view["traceback"]
    assert view["attempts"] == 1  # a deterministic failure is not retried


def test_worker_parent_process_never_loads_torch(bertq, tiny_model, tiny_data):
    """CUDA must not be initialised in the process that forks the worker children."""
    worker = bertq.start_worker()
    job_id = submit_tiny_finetune(bertq, tiny_model, tiny_data, "--max-steps", "2")
    assert bertq.run("wait", str(job_id), "--timeout", "300").returncode == 0
    maps = Path(f"/proc/{worker.pid}/maps").read_text()
    assert "libtorch" not in maps
