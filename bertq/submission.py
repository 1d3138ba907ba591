"""Submitting a validated spec: commit the job row, then deliver its id to the queue.

The row is committed first, so a worker that receives the id always finds the job. If the message
cannot be delivered the row is removed again: a submit either enqueues a job or leaves nothing.
"""

from __future__ import annotations

from typing import Any

from bertq.config import Settings, load_settings
from bertq.db.engine import sessions
from bertq.db.jobs import create_job
from bertq.db.models import Job
from bertq.errors import BertqError, BrokerError, SpecError

QUEUE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def check_queue_options(queue: str, priority: int) -> None:
    problems = []
    if not queue or not set(queue) <= QUEUE_NAME_CHARS:
        problems.append(f"--queue {queue!r}: use lower-case letters, digits, '-', '_' or '.' (e.g. gpu, cpu)")
    if not 0 <= priority <= 9:
        problems.append(f"--priority must be 0 (lowest) to 9 (most urgent), got {priority}")
    if problems:
        raise SpecError(problems)


def submit(kind: str, spec: dict[str, Any], *, queue: str, priority: int, settings: Settings | None = None) -> int:
    """Record and enqueue one job; return its id."""
    from bertq.worker.app import make_app, send_job  # celery: only needed to send

    settings = settings or load_settings()
    check_queue_options(queue, priority)
    app = make_app(settings)  # starts the embedded Redis if needed, before any row exists
    factory = sessions(settings)
    with factory() as session, session.begin():
        job = create_job(
            session=session, kind=kind, spec=spec, queue=queue, priority=priority, max_attempts=settings.max_attempts
        )
        job_id = job.id
    try:
        send_job(app, job_id=job_id, kind=kind, queue=queue, priority=priority)
    except Exception as error:
        with factory() as session, session.begin():
            session.delete(session.get(Job, job_id))
        raise BrokerError(f"could not deliver job {job_id} to the broker ({error}); nothing was enqueued") from error
    return job_id


__all__ = ["submit", "check_queue_options", "BertqError"]
