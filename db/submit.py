"""Submitting a plan: commit the job rows, then dispatch the ids of those ready to run.

Rows are committed first, so a worker that receives an id always finds the job. If a message cannot
be delivered, the rows of this submit are removed again: a submit either enqueues its jobs or leaves
nothing behind. Jobs that wait for others (a fine-tune's evaluation, pipeline steps) are WAITING
rows; the job they wait for releases them when it succeeds (`jobs.release_ready`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bertq.config import Settings, load_settings
from bertq.db import jobs as job_queries
from bertq.db.engine import sessions
from bertq.db.models import Job, JobDependency, JobStatus, ShardRow
from bertq.dispatch import Delivery, dispatch, make_app
from bertq.errors import BrokerError, SpecError
from bertq.plan import PlannedJob, check_queue_options
from bertq.safety import spec_problems


def submit(kind: str, spec: dict[str, Any], *, queue: str, priority: int, settings: Settings | None = None) -> int:
    """Record and enqueue one job; return its id."""
    return submit_plan([PlannedJob(kind, spec, queue, priority)], settings=settings)[0]


def submit_plan(
    plan: list[PlannedJob],
    *,
    settings: Settings | None = None,
    extra_rows: Callable[[list[int]], list[Any]] | None = None,
) -> list[int]:
    """Record every job of the plan in one transaction, then enqueue those that are ready.

    `extra_rows(ids)` gives more rows (a bulk job's shards) to commit in the same transaction."""
    settings = settings or load_settings()
    for planned in plan:
        check_queue_options(planned.queue, planned.priority)
    app = make_app(settings)  # starts the embedded Redis if needed, before any row exists
    factory = sessions(settings)
    with factory() as session, session.begin():
        ids, ready = record_plan(session=session, plan=plan, settings=settings, extra_rows=extra_rows)
    try:
        dispatch(ready, app=app)
    except Exception as error:
        with factory() as session, session.begin():
            session.execute(delete(ShardRow).where(ShardRow.job_id.in_(ids)))
            session.execute(delete(JobDependency).where(JobDependency.job_id.in_(ids)))
            session.execute(delete(Job).where(Job.id.in_(ids)))
        raise BrokerError(f"could not deliver to the broker ({error}); nothing was enqueued") from error
    return ids


def record_plan(
    *,
    session: Session,
    plan: list[PlannedJob],
    settings: Settings,
    extra_rows: Callable[[list[int]], list[Any]] | None = None,
) -> tuple[list[int], list[Delivery]]:
    """Add the plan's job rows, dependencies and `extra_rows(ids)` in the caller's transaction;
    return the new ids and the deliveries of those ready to run (to dispatch once committed).
    A submit calls it; so does a running job that adds steps to its pipeline (bulk planning)."""
    # Rows first (their ids are needed by specs and dependencies), then specs and dependencies.
    jobs = [
        job_queries.create_job(
            session=session,
            kind=p.kind,
            spec={},
            queue=p.queue,
            priority=p.priority,
            max_attempts=settings.max_attempts,
            waiting=bool(p.after or p.after_existing),
        )
        for p in plan
    ]
    ids = [job.id for job in jobs]
    for job, planned in zip(jobs, plan):
        job.spec = planned.spec(ids) if callable(planned.spec) else planned.spec
        job.parent_id = ids[planned.parent] if planned.parent is not None else planned.parent_id
        for dependency in [ids[i] for i in planned.after] + planned.after_existing:
            session.add(JobDependency(job_id=job.id, depends_on_id=dependency))
    problems = spec_problems([job.spec for job in jobs], settings)
    if problems:  # paths outside the allowed roots: the transaction rolls back, nothing is enqueued
        raise SpecError(problems)
    if extra_rows is not None:
        session.add_all(extra_rows(ids))
    session.flush()
    # WAITING jobs whose dependencies already ended (before this plan's rows existed) are
    # released or abandoned by the same rule a finishing job applies.
    job_queries.release_ready(session=session, job_ids=ids)
    ready = [
        Delivery(j.id, j.kind, j.queue, j.priority)
        for j in session.scalars(select(Job).where(Job.id.in_(ids), Job.status == JobStatus.QUEUED).order_by(Job.id))
    ]
    return ids, ready
