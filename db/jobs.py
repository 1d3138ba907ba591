"""Queries on jobs. The session is the caller's; every function takes it keyword-only.

Who runs a job is decided here, not by the broker: `claim` is one conditional UPDATE that takes a
lease and bumps the attempt number, and every later write of that attempt first re-checks (and
renews) the lease with `fence`, in the same transaction as the write. A duplicate delivery finds
the job claimed and does nothing; a stale attempt finds its fence gone and stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, aliased, selectinload

from bertq.db.models import FINISHED, Artifact, Attempt, Job, JobDependency, JobStatus, Metric, utcnow
from bertq.errors import AttemptSuperseded


@dataclass(frozen=True)
class Claim:
    job_id: int
    attempt: int
    kind: str
    spec: dict[str, Any]


def create_job(
    *,
    session: Session,
    kind: str,
    spec: dict[str, Any],
    queue: str,
    priority: int,
    max_attempts: int,
    parent_id: int | None = None,
    depends_on: tuple[int, ...] = (),
    waiting: bool = False,
) -> Job:
    """A new job row: QUEUED, or WAITING when it depends on other jobs."""
    job = Job(
        kind=kind,
        spec=spec,
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        parent_id=parent_id,
        status=JobStatus.WAITING if depends_on or waiting else JobStatus.QUEUED,
        progress_detail={},
        result={},
    )
    session.add(job)
    session.flush()
    for dependency in depends_on:
        session.add(JobDependency(job_id=job.id, depends_on_id=dependency))
    return job


def claim(
    *, session: Session, job_id: int, worker: str, lease_seconds: float, now: datetime | None = None
) -> Claim | None:
    """Take the job for a new attempt, or return None if it is not ours to run.

    A job can be claimed when it is QUEUED, or RUNNING with an expired lease (its worker died).
    """
    now = now or utcnow()
    claimable = (Job.status == JobStatus.QUEUED) | ((Job.status == JobStatus.RUNNING) & (Job.lease_expires_at < now))
    taken = session.execute(
        update(Job)
        .where(Job.id == job_id, claimable, Job.attempts < Job.max_attempts)
        .values(
            status=JobStatus.RUNNING,
            attempts=Job.attempts + 1,
            lease_owner=worker,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            heartbeat_at=now,
            started_at=func.coalesce(Job.started_at, now),
        )
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        _fail_if_out_of_attempts(session=session, job_id=job_id, now=now)
        return None
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    _close_open_attempts(session=session, job_id=job_id, outcome="LOST", now=now)
    session.add(Attempt(job_id=job_id, number=job.attempts, worker=worker, started_at=now))
    return Claim(job_id=job_id, attempt=job.attempts, kind=job.kind, spec=job.spec)


def _fail_if_out_of_attempts(*, session: Session, job_id: int, now: datetime) -> None:
    """A job whose worker died on every attempt ends FAILED instead of being retried for ever."""
    end_unsuccessfully(
        session=session,
        job_id=job_id,
        status=JobStatus.FAILED,
        error=_lost_message(session, job_id),
        only_if=[Job.status == JobStatus.RUNNING, Job.lease_expires_at < now, Job.attempts >= Job.max_attempts],
        attempt_outcome="LOST",
        now=now,
    )


def _lost_message(session: Session, job_id: int) -> str:
    attempts = session.scalar(select(Job.attempts).where(Job.id == job_id))
    return (
        f"the worker running this job was lost on each of its {attempts} attempts (killed, out of memory, "
        "or its lease expired); see `bertq logs` for the last output, then resubmit"
    )


def _close_open_attempts(
    *, session: Session, job_id: int, outcome: str, now: datetime, error: str | None = None
) -> None:
    session.execute(
        update(Attempt)
        .where(Attempt.job_id == job_id, Attempt.ended_at.is_(None))
        .values(ended_at=now, outcome=outcome, error=error)
        .execution_options(synchronize_session=False)
    )


def fence(*, session: Session, job_id: int, attempt: int, lease_seconds: float, now: datetime | None = None) -> None:
    """Renew the lease if `attempt` is still the job's current, running attempt; else raise.

    Call it first in every transaction that writes an attempt's results: the UPDATE locks the row
    (PostgreSQL) or the database (SQLite) until commit, so no claim can slip in between.
    """
    now = now or utcnow()
    renewed = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempts == attempt, Job.status == JobStatus.RUNNING)
        .values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    if renewed.rowcount != 1:
        raise AttemptSuperseded(f"job {job_id}: attempt {attempt} is no longer current (cancelled or taken over)")


def set_progress(*, session: Session, job_id: int, progress: float, detail: dict[str, Any]) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(progress=max(0.0, min(1.0, progress)), progress_detail=detail)
        .execution_options(synchronize_session=False)
    )


def add_metrics(
    *,
    session: Session,
    job_id: int,
    attempt: int,
    values: dict[str, float],
    split: str | None = None,
    step: int | None = None,
    epoch: float | None = None,
) -> None:
    for name, value in values.items():
        session.add(
            Metric(job_id=job_id, attempt=attempt, name=name, value=float(value), split=split, step=step, epoch=epoch)
        )


def add_artifact(*, session: Session, job_id: int, kind: str, path: str, size_bytes: int, sha256: str) -> None:
    session.add(Artifact(job_id=job_id, kind=kind, path=path, size_bytes=size_bytes, sha256=sha256))


def finish(
    *,
    session: Session,
    job_id: int,
    attempt: int,
    status: JobStatus,
    error: str | None = None,
    traceback: str | None = None,
    result: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """End the current attempt with `status` (fenced: a stale attempt raises AttemptSuperseded).

    A job that did not succeed also ends its dependants (see `end_unsuccessfully`)."""
    now = now or utcnow()
    current = [Job.attempts == attempt, Job.status == JobStatus.RUNNING]
    if status != JobStatus.SUCCEEDED:
        ended = end_unsuccessfully(
            session=session,
            job_id=job_id,
            status=status,
            error=error or str(status),
            only_if=current,
            traceback=traceback,
            attempt_outcome=str(status),
            now=now,
        )
        if ended is None:
            raise AttemptSuperseded(f"job {job_id}: attempt {attempt} is no longer current")
        return
    values: dict[str, Any] = dict(
        status=status, finished_at=now, lease_owner=None, error=error, traceback=traceback, progress=1.0
    )
    if result is not None:
        values["result"] = result
    done = session.execute(
        update(Job).where(Job.id == job_id, *current).values(**values).execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:
        raise AttemptSuperseded(f"job {job_id}: attempt {attempt} is no longer current")
    _close_open_attempts(session=session, job_id=job_id, outcome=str(status), now=now, error=error)


def end_unsuccessfully(
    *,
    session: Session,
    job_id: int,
    status: JobStatus,
    error: str,
    only_if: list[Any] | None = None,
    traceback: str | None = None,
    attempt_outcome: str | None = None,
    now: datetime | None = None,
) -> list[int] | None:
    """The one way a job ends FAILED or CANCELLED: the runner's failure, a retry out of attempts, the
    reaper or a claim finding the worker lost on every attempt, a cancel, a step abandoned because
    an earlier one failed. Every one of them must also end what can no longer run: the jobs waiting
    on this one (transitively) are marked not run with a reason naming this step, and its pipeline's
    row ends FAILED. Before this was one function, the lost-on-every-attempt path forgot that and
    left dependants WAITING for ever.

    `only_if` holds extra conditions of the conditional UPDATE (default: the job has not finished).
    Returns the ids of the jobs ended with it, or None when the job was not in a state to end."""
    now = now or utcnow()
    conditions = only_if if only_if is not None else [Job.status.not_in([str(s) for s in FINISHED])]
    ended = session.execute(
        update(Job)
        .where(Job.id == job_id, *conditions)
        .values(
            status=status,
            finished_at=now,
            lease_owner=None,
            error=error,
            traceback=traceback,
            cancel_requested=status == JobStatus.CANCELLED,
        )
        .execution_options(synchronize_session=False)
    )
    if ended.rowcount != 1:
        return None
    _close_open_attempts(
        session=session,
        job_id=job_id,
        outcome=attempt_outcome or str(status),
        now=now,
        error=error if status == JobStatus.FAILED else None,
    )
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    if status == JobStatus.CANCELLED:
        reason = f"job {job_id} ({job.kind}) was cancelled"
    else:
        reason = f"step {job_id} ({job.kind}) failed: {error}"
    return _abandon_dependants(session=session, job=job, reason=reason, now=now)


def end_attempt(*, session: Session, job_id: int, attempt: int, outcome: str, error: str | None = None) -> None:
    """Record how an attempt ended when the job itself was not finished by it."""
    session.execute(
        update(Attempt)
        .where(Attempt.job_id == job_id, Attempt.number == attempt, Attempt.ended_at.is_(None))
        .values(ended_at=utcnow(), outcome=outcome, error=error)
        .execution_options(synchronize_session=False)
    )


def cancel(*, session: Session, job_id: int) -> list[int] | None:
    """Cancel a job that has not finished, its unfinished steps (a pipeline's, a bulk job's shards)
    and the jobs waiting on it; a running attempt notices at its next heartbeat and stops.

    Returns the other jobs ended with it, or None when the job had already ended."""
    ended = end_unsuccessfully(
        session=session, job_id=job_id, status=JobStatus.CANCELLED, error="cancelled", attempt_outcome="CANCELLED"
    )
    if ended is None:
        return None
    for child in session.scalars(select(Job.id).where(Job.parent_id == job_id)).all():
        more = cancel(session=session, job_id=child)
        ended += [child, *(more or [])] if more is not None else []
    return sorted(set(ended))


def expired_leases(*, session: Session, now: datetime | None = None) -> list[int]:
    now = now or utcnow()
    return list(session.scalars(select(Job.id).where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < now)))


def queued_since(*, session: Session, seconds: float, now: datetime | None = None) -> list[Job]:
    """QUEUED jobs created at least `seconds` ago (those whose message may have been lost)."""
    cutoff = (now or utcnow()) - timedelta(seconds=seconds)
    return list(session.scalars(select(Job).where(Job.status == JobStatus.QUEUED, Job.created_at <= cutoff)))


def requeue_lost(*, session: Session, job_id: int, now: datetime | None = None) -> bool:
    """Put a job whose worker vanished back in the queue (or fail it if out of attempts)."""
    now = now or utcnow()
    requeued = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status == JobStatus.RUNNING,
            Job.lease_expires_at < now,
            Job.attempts < Job.max_attempts,
        )
        .values(status=JobStatus.QUEUED, lease_owner=None)
        .execution_options(synchronize_session=False)
    )
    if requeued.rowcount:
        _close_open_attempts(session=session, job_id=job_id, outcome="LOST", now=now)
        return True
    _fail_if_out_of_attempts(session=session, job_id=job_id, now=now)
    return False


JOB_SORTS: dict[str, list[Any]] = {
    "newest": [Job.id.desc()],
    "oldest": [Job.id],
    "priority": [Job.priority.desc(), Job.id],
    "status": [Job.status, Job.id.desc()],
}
"""`bertq jobs --sort`: fixed names mapped to columns, so user text never becomes SQL."""


def list_jobs(*, session: Session, status: str | None, kind: str | None, sort: str, limit: int) -> list[Job]:
    """Jobs with their metrics loaded, filtered by status and kind."""
    query = select(Job).options(selectinload(Job.metrics)).order_by(*JOB_SORTS[sort]).limit(limit)
    if status:
        query = query.where(Job.status == status)
    if kind:
        query = query.where(Job.kind == kind)
    return list(session.scalars(query))


def succeeded_jobs(*, session: Session, kind: str) -> list[Job]:
    """Every SUCCEEDED job of `kind`, oldest first, with its metrics loaded (the report's input)."""
    query = (
        select(Job)
        .options(selectinload(Job.metrics))
        .where(Job.kind == kind, Job.status == JobStatus.SUCCEEDED)
        .order_by(Job.id)
    )
    return list(session.scalars(query))


def latest_metrics(job: Job) -> dict[str, float]:
    values: dict[str, float] = {}
    for metric in job.metrics:  # ordered by id: later rows win
        values[metric.name] = metric.value
    return values


def release_dependants(*, session: Session, job_id: int) -> list[Job]:
    """Called when `job_id` succeeded: its WAITING dependants whose every dependency has now
    SUCCEEDED become QUEUED; returns them (to be sent to the broker)."""
    waiting = session.scalars(select(JobDependency.job_id).where(JobDependency.depends_on_id == job_id)).all()
    return release_ready(session=session, job_ids=list(waiting))


def release_ready(*, session: Session, job_ids: list[int], now: datetime | None = None) -> list[Job]:
    """The dependency rule, written once: a WAITING job among `job_ids` becomes QUEUED when every job
    it depends on SUCCEEDED, and is not run when one of them failed or was cancelled (a dependency
    may have ended before this job's row was committed). Returns the jobs released, by id."""
    released = []
    for job in session.scalars(
        select(Job).where(Job.id.in_(job_ids), Job.status == JobStatus.WAITING).order_by(Job.id)
    ).all():
        statuses = dict(
            session.execute(
                select(Job.id, Job.status)
                .join(JobDependency, JobDependency.depends_on_id == Job.id)
                .where(JobDependency.job_id == job.id)
            ).all()
        )
        if not statuses:
            continue  # a pipeline's row that waits for steps not yet linked
        dead = sorted(i for i, status in statuses.items() if status in (JobStatus.FAILED, JobStatus.CANCELLED))
        if dead:
            end_unsuccessfully(
                session=session,
                job_id=job.id,
                status=JobStatus.CANCELLED,
                error=f"not run: job {dead[0]}, which it waits for, ended {statuses[dead[0]]}",
                only_if=[Job.status == JobStatus.WAITING],
                now=now,
            )
            continue
        if all(status == JobStatus.SUCCEEDED for status in statuses.values()):
            moved = session.execute(
                update(Job)
                .where(Job.id == job.id, Job.status == JobStatus.WAITING)
                .values(status=JobStatus.QUEUED)
                .execution_options(synchronize_session=False)
            )
            if moved.rowcount:
                session.refresh(job)
                released.append(job)
    return released


def _abandon_dependants(*, session: Session, job: Job, reason: str, now: datetime) -> list[int]:
    """A step that ended without succeeding: the jobs waiting on it (transitively) will never run.
    They are CANCELLED ("not run: ..."); the pipeline they belong to (the step's parent) is FAILED
    and says which step failed and why, whether or not it waits on this step directly."""
    pipeline = job.parent_id
    abandoned: list[int] = []
    frontier = [job.id]
    while frontier:
        current = frontier.pop()
        for dependant in session.scalars(
            select(JobDependency.job_id).where(JobDependency.depends_on_id == current)
        ).all():
            if _end_waiting(session, dependant, reason, is_pipeline=dependant == pipeline, now=now):
                abandoned.append(dependant)
                frontier.append(dependant)
    if pipeline is not None and _end_waiting(session, pipeline, reason, is_pipeline=True, now=now):
        abandoned.append(pipeline)
        frontier.append(pipeline)
    return abandoned


def _end_waiting(session: Session, job_id: int, reason: str, *, is_pipeline: bool, now: datetime) -> bool:
    moved = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.WAITING)
        .values(
            status=JobStatus.FAILED if is_pipeline else JobStatus.CANCELLED,
            finished_at=now,
            error=reason if is_pipeline else f"not run: {reason}",
        )
        .execution_options(synchronize_session=False)
    )
    return moved.rowcount == 1


def orphans(*, session: Session) -> list[tuple[int, int, str]]:
    """WAITING jobs that can never run: (job id, the dependency that ended, how it ended). Empty
    unless something bypassed `end_unsuccessfully`; tests and `bertq jobs` check it."""
    blocker = aliased(Job)
    rows = session.execute(
        select(Job.id, blocker.id, blocker.status)
        .join(JobDependency, JobDependency.job_id == Job.id)
        .join(blocker, blocker.id == JobDependency.depends_on_id)
        .where(Job.status == JobStatus.WAITING, blocker.status.in_([JobStatus.FAILED, JobStatus.CANCELLED]))
        .order_by(Job.id, blocker.id)
    ).all()
    return [(job_id, blocked_by, str(status)) for job_id, blocked_by, status in rows]


def record_resume(*, session: Session, job_id: int, attempt: int, checkpoint: str) -> None:
    """The attempt resumes from an earlier attempt's checkpoint (shown by `bertq show`)."""
    session.execute(
        update(Attempt)
        .where(Attempt.job_id == job_id, Attempt.number == attempt)
        .values(resumed_from=checkpoint)
        .execution_options(synchronize_session=False)
    )


def forget_metrics_after(*, session: Session, job_id: int, step: int) -> None:
    """Remove the metric rows logged after `step`: training starts again there and logs them again."""
    session.execute(
        delete(Metric).where(Metric.job_id == job_id, Metric.step > step).execution_options(synchronize_session=False)
    )


def checkpoint_path(*, session: Session, job_id: int) -> str | None:
    """The newest checkpoint folder a job recorded, or None."""
    return artifact_path(session=session, job_id=job_id, kind="checkpoint")


def artifact_path(*, session: Session, job_id: int, kind: str) -> str | None:
    """The newest artifact of `kind` a job recorded, or None."""
    return session.scalar(
        select(Artifact.path)
        .where(Artifact.job_id == job_id, Artifact.kind == kind)
        .order_by(Artifact.id.desc())
        .limit(1)
    )


def artifact_record(*, session: Session, job_id: int, kind: str) -> tuple[str, str] | None:
    """(path or URL, sha256) of the newest artifact of `kind` a job recorded, or None."""
    row = session.execute(
        select(Artifact.path, Artifact.sha256)
        .where(Artifact.job_id == job_id, Artifact.kind == kind)
        .order_by(Artifact.id.desc())
        .limit(1)
    ).first()
    return (row[0], row[1]) if row else None


def request_preemption(*, session: Session, worker_prefix: str) -> list[int]:
    """Ask every job running on this worker (lease owner `host/pid...`) to checkpoint and requeue."""
    ids = list(
        session.scalars(
            select(Job.id).where(Job.status == JobStatus.RUNNING, Job.lease_owner.startswith(worker_prefix))
        )
    )
    if ids:
        session.execute(
            update(Job)
            .where(Job.id.in_(ids))
            .values(preempt_requested=True)
            .execution_options(synchronize_session=False)
        )
    return ids


def preemption_requested(*, session: Session, job_id: int) -> bool:
    return bool(session.scalar(select(Job.preempt_requested).where(Job.id == job_id)))


def requeue_preempted(*, session: Session, job_id: int, attempt: int) -> bool:
    """The current attempt checkpointed for a shutdown: back to QUEUED, without using up an attempt."""
    moved = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempts == attempt, Job.status == JobStatus.RUNNING)
        .values(status=JobStatus.QUEUED, lease_owner=None, preempt_requested=False, max_attempts=Job.max_attempts + 1)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount:
        end_attempt(session=session, job_id=job_id, attempt=attempt, outcome="PREEMPTED")
    return moved.rowcount == 1


def retry_later(*, session: Session, job_id: int, attempt: int, reason: str) -> bool:
    """The current attempt hit a passing fault (disk full, the database away): back to QUEUED for
    another attempt, or FAILED with the reason once its attempts are used up. True when requeued."""
    moved = session.execute(
        update(Job)
        .where(
            Job.id == job_id, Job.attempts == attempt, Job.status == JobStatus.RUNNING, Job.attempts < Job.max_attempts
        )
        .values(status=JobStatus.QUEUED, lease_owner=None, error=f"attempt {attempt}: {reason}; retrying")
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount:
        end_attempt(session=session, job_id=job_id, attempt=attempt, outcome="RETRY", error=reason)
        return True
    finish(
        session=session,
        job_id=job_id,
        attempt=attempt,
        status=JobStatus.FAILED,
        error=f"{reason} (on attempt {attempt}, the last one allowed)",
    )
    return False
