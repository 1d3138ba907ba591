"""What operators alert and autoscale on, read from the database in one pass per scrape:
queue depth and oldest queued age per queue, jobs by kind and status, attempts by outcome, bulk
rows per second, live workers by device. `bertq metrics` serves them to Prometheus."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bertq.db.models import Attempt, Job, JobStatus, utcnow
from bertq.db.workers import list_workers


@dataclass
class Snapshot:
    queue_depth: dict[str, int] = field(default_factory=dict)
    oldest_queued_seconds: dict[str, float] = field(default_factory=dict)
    jobs: dict[tuple[str, str], int] = field(default_factory=dict)
    """(kind, status) → count."""
    attempts: dict[str, int] = field(default_factory=dict)
    """outcome (RUNNING for open attempts) → count."""
    bulk_rows_per_second: float = 0.0
    """The sum of the running bulk-inference shards' current rates."""
    live_workers: dict[str, int] = field(default_factory=dict)
    """device → live workers."""


def snapshot(session: Session) -> Snapshot:
    now = utcnow()
    result = Snapshot()
    queued = session.execute(
        select(Job.queue, func.count(), func.min(Job.created_at))
        .where(Job.status == JobStatus.QUEUED)
        .group_by(Job.queue)
    ).all()
    for queue, count, oldest in queued:
        result.queue_depth[queue] = int(count)
        result.oldest_queued_seconds[queue] = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
    for kind, status, count in session.execute(
        select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
    ):
        result.jobs[(kind, status)] = int(count)
    for outcome, count in session.execute(select(Attempt.outcome, func.count()).group_by(Attempt.outcome)):
        result.attempts[outcome or "RUNNING"] = int(count)
    running_shards = session.scalars(
        select(Job.progress_detail).where(Job.kind == "infer_shard", Job.status == JobStatus.RUNNING)
    ).all()
    result.bulk_rows_per_second = float(sum((detail or {}).get("rate_per_s") or 0.0 for detail in running_shards))
    for worker in list_workers(session):
        result.live_workers[worker.device] = result.live_workers.get(worker.device, 0) + 1
    return result
