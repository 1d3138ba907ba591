"""How jobs look to a person (tables, progress lines) and to a script (JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bertq.db.jobs import latest_metrics
from bertq.db.models import Job, utcnow
from bertq.families import FAMILIES
from bertq.families.classification import learned_nothing
from bertq.jobkinds import model_of

MAIN_METRICS = tuple(
    name for family in FAMILIES.values() for name in (f"eval_{family.main_metric}", family.main_metric)
)
"""The MAIN METRIC column: each family's metric, as a fine-tune (eval_) or an evaluate job records it."""


def _time(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value else None


def job_view(job: Job) -> dict[str, Any]:
    """`bertq show --json`: the job's state, progress, metrics, artifacts and error."""
    metrics = latest_metrics(job)
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "queue": job.queue,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "progress": round(job.progress, 4),
        "progress_detail": job.progress_detail,
        "model": model_of(job.kind, job.spec),
        "metrics": metrics,
        "warning": learned_nothing(metrics),
        "artifacts": [
            {"kind": a.kind, "path": a.path, "sha256": a.sha256, "size_bytes": a.size_bytes} for a in job.artifacts
        ],
        "device": job.result.get("device") or job.spec.get("device"),
        "precision": job.result.get("precision") or job.spec.get("precision"),
        "error": job.error,
        "traceback": job.traceback,
        "result": job.result,
        "summary": job.result.get("summary"),
        "parent_id": job.parent_id,
        "children": [{"id": c.id, "kind": c.kind, "status": c.status} for c in job.children],
        "lease_owner": job.lease_owner,
        "created_at": _time(job.created_at),
        "started_at": _time(job.started_at),
        "finished_at": _time(job.finished_at),
        "attempt_history": [
            {
                "number": a.number,
                "worker": a.worker,
                "started_at": _time(a.started_at),
                "ended_at": _time(a.ended_at),
                "outcome": a.outcome,
                "resumed_from": a.resumed_from,
                "error": a.error,
            }
            for a in job.attempt_rows
        ],
        "spec": job.spec,
    }


def age(value: datetime | None) -> str:
    if value is None:
        return "-"
    return duration((utcnow() - value).total_seconds())


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def main_metric(metrics: dict[str, float]) -> str:
    """The job's main metric for `bertq jobs`; `!` marks a classifier no better than the majority class."""
    for name in MAIN_METRICS:
        if name in metrics:
            return f"{name}={metrics[name]:.4f}" + (" !" if learned_nothing(metrics) else "")
    return "-"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def progress_line(job: Job, width: int = 24) -> str:
    filled = int(round(job.progress * width))
    bar = "#" * filled + "." * (width - filled)
    detail = job.progress_detail or {}
    parts = [f"job {job.id} {job.status:<9} [{bar}] {job.progress * 100:5.1f}%"]
    if detail.get("rows") is not None:
        parts.append(f"rows {detail['rows']}/{detail.get('total')}")
        if detail.get("rate_per_s"):
            parts.append(f"{detail['rate_per_s']:.0f}/s")
    elif detail.get("total"):
        parts.append(f"step {detail.get('step')}/{detail.get('total')}")
    if detail.get("loss") is not None:
        parts.append(f"loss {detail['loss']:.4f}")
    if detail.get("eta_seconds") is not None and job.status in ("RUNNING", "WAITING") and job.progress < 1:
        parts.append(f"ETA {duration(detail['eta_seconds'])}")
    if detail.get("phase") and job.status == "RUNNING":
        parts.append(str(detail["phase"]))
    return "  ".join(parts)
