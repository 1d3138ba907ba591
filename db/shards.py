"""Queries on the shards of bulk-inference jobs. The session is the caller's (a fenced write of the
shard's attempt, see `JobContext.write`); every function takes it keyword-only."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bertq.db.models import Job, ShardRow, utcnow


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
