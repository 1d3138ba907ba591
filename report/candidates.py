"""The report's candidates: every successful evaluate job, with its numbers and lineage."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bertq.db.jobs import latest_metrics, succeeded_jobs
from bertq.db.models import Job
from bertq.families import PRESETS
from bertq.report.scenarios import Candidate

DEPLOYMENT_METRICS = ("params", "size_mb", "peak_memory_mb", "latency_p50_ms", "latency_p95_ms", "throughput_per_s")


def _model_name(session: Session, spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A readable model name and its lineage (fine-tuned from, distilled from which teacher)."""
    source_id = spec.get("model_job_id")
    if not source_id:
        return str(spec.get("model")), {}
    source = session.get(Job, source_id)
    if source is None:
        return f"job {source_id}", {}
    if source.kind == "student":
        teacher = source.spec.get("teacher_job_id")
        layers = source.spec.get("student_layers")
        student = "cut " + ",".join(map(str, layers)) if layers else source.spec.get("student")
        name = f"student {source_id} ({student} of teacher {teacher}, alpha {source.spec.get('alpha')})"
        return name, {
            "kind": "student",
            "job": source_id,
            "distilled_from_job": teacher,
            "alpha": source.spec.get("alpha"),
            "transfer_data": source.spec.get("transfer_data"),
        }
    name = f"{source.spec.get('model')} fine-tuned (job {source_id})"
    return name, {"kind": source.kind, "job": source_id, "fine_tuned_from": source.spec.get("model")}


def load_candidates(session: Session, *, task: str | None = None, data: str | None = None) -> list[Candidate]:
    """One candidate per evaluated (model, precision, device, data): the newest evaluation of it, so a
    model measured again (after a driver update, on a quiet machine) is represented by its last numbers."""
    latest: dict[tuple, Candidate] = {}
    for job in succeeded_jobs(session=session, kind="evaluate"):
        spec, result = job.spec, job.result or {}
        if task and spec.get("task") != task:
            continue
        if data and spec.get("data") != data and not str(spec.get("data", "")).endswith(data):
            continue
        metrics = latest_metrics(job)
        preset = PRESETS.get(spec.get("task") or "")
        main = preset.family.main_metric if preset else ""
        if main in metrics:
            metrics["task_metric"] = metrics[main]
        name, lineage = _model_name(session, spec)
        candidate = Candidate(
            job_id=job.id,
            model=name,
            precision=result.get("precision", spec.get("precision", "?")),
            device=result.get("device", spec.get("device", "?")),
            device_name=result.get("device_name", result.get("device", "?")),
            task=spec.get("task", "?"),
            metrics=metrics,
            lineage=lineage,
            data=str(spec.get("data") or ""),
        )
        model_key = spec.get("model_job_id") or result.get("model_location") or spec.get("model")
        latest[(model_key, candidate.precision, candidate.device_name, candidate.task, spec.get("data"))] = candidate
    return sorted(latest.values(), key=lambda c: c.job_id)
