"""Queries on the shards of bulk-inference jobs. The session is the caller's (a fenced write of the
shard's attempt, see `JobContext.write`); every function takes it keyword-only."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bertq import bulk
from bertq.config import Settings
from bertq.db.models import Job, JobDependency, JobStatus, ShardRow, utcnow
from bertq.db.submit import record_plan
from bertq.dispatch import Delivery
from bertq.sharding import Shard


def report_rows(*, session: Session, parent: int, index: int, done: int) -> None:
    """This shard's rows done, and the whole job's progress on its own row."""
    session.execute(
        update(ShardRow)
        .where(ShardRow.job_id == parent, ShardRow.index == index)
        .values(rows_done=done)
        .execution_options(synchronize_session=False)
    )
    sums = session.execute(
        select(func.sum(ShardRow.rows_done), func.sum(ShardRow.records)).where(ShardRow.job_id == parent)
    ).one()
    rows_done, total = (int(value or 0) for value in sums)  # PostgreSQL sums integers as NUMERIC (Decimal)
    first_start = session.scalar(
        select(func.min(Job.started_at))
        .join(ShardRow, ShardRow.shard_job_id == Job.id)
        .where(ShardRow.job_id == parent)
    )
    elapsed = max((utcnow() - first_start).total_seconds(), 1e-3) if first_start else None
    rate = rows_done / elapsed if elapsed else None
    session.execute(
        update(Job)
        .where(Job.id == parent)
        .values(
            progress=rows_done / max(total, 1),
            progress_detail={
                "rows": rows_done,
                "total": total,
                "rate_per_s": round(rate, 1) if rate else None,
                "eta_seconds": round((total - rows_done) / rate) if rate else None,
            },
        )
        .execution_options(synchronize_session=False)
    )


def commit_output(*, session: Session, parent: int, index: int, path: str, sha256: str, rows: int) -> None:
    """Offer this attempt's file as the shard's output (fenced by the caller: one attempt wins)."""
    session.execute(
        update(ShardRow)
        .where(ShardRow.job_id == parent, ShardRow.index == index)
        .values(output_path=path, output_sha256=sha256, rows_done=rows)
        .execution_options(synchronize_session=False)
    )


def shards_of(*, session: Session, job_id: int) -> list[ShardRow]:
    return list(session.scalars(select(ShardRow).where(ShardRow.job_id == job_id).order_by(ShardRow.index)))


def add_shards(*, session: Session, parent: int, shards: list[Shard], settings: Settings) -> list[Delivery]:
    """The planning step's commit (fenced by the caller): the shard jobs of bulk job `parent`, their
    shard rows, and the bulk job waiting on each; its spec gets the planned counts. Once only: an
    attempt that finds the shards planned already (its predecessor committed, then died) adds
    nothing. Returns the shard jobs to send to the broker once committed."""
    job = session.get(Job, parent)
    assert job is not None
    if shards_of(session=session, job_id=parent):
        queued = session.scalars(
            select(Job).where(Job.parent_id == parent, Job.kind == "infer_shard", Job.status == JobStatus.QUEUED)
        )
        return [Delivery(j.id, j.kind, j.queue, j.priority) for j in queued]
    spec = bulk.InferSpec.from_dict(job.spec)
    steps = bulk.shard_jobs(spec, shards, parent=parent, queue=job.queue, priority=job.priority)

    def rows(ids: list[int]) -> list[object]:
        return [
            *(ShardRow(**row) for row in bulk.shard_rows(parent, ids, shards)),
            *(JobDependency(job_id=parent, depends_on_id=i) for i in ids),
        ]

    _, ready = record_plan(session=session, plan=steps, settings=settings, extra_rows=rows)
    job.spec = {**job.spec, "shards": len(shards), "records": sum(s.records for s in shards)}
    return ready
