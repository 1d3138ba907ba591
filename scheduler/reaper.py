"""The lease reaper: jobs whose worker vanished (lease expired) go back to the queue.

Celery's Redis transport would redeliver such a message only after its visibility timeout (an hour
by default); the lease is much shorter, so the reaper brings lost work back sooner. Running it in
several processes at once is harmless: each requeue is a conditional UPDATE.
"""

from __future__ import annotations

import logging

from bertq.config import Settings
from bertq.db import jobs as job_queries
from bertq.db.engine import sessions
from bertq.db.models import Job

log = logging.getLogger("bertq.reaper")


def reap_expired_leases(settings: Settings) -> list[int]:
    """Requeue (or fail, when out of attempts) every job whose lease has expired; return requeued ids."""
    from bertq.worker.app import make_app, send_job

    factory = sessions(settings)
    requeued: list[tuple[int, str, str, int]] = []
    with factory() as session, session.begin():
        for job_id in job_queries.expired_leases(session=session):
            if job_queries.requeue_lost(session=session, job_id=job_id):
                job = session.get(Job, job_id)
                assert job is not None
                requeued.append((job.id, job.kind, job.queue, job.priority))
    if requeued:
        app = make_app(settings)
        for job_id, kind, queue, priority in requeued:
            log.warning("job %s lost its worker (lease expired); requeued", job_id)
            send_job(app, job_id=job_id, kind=kind, queue=queue, priority=priority)
    return [job_id for job_id, *_ in requeued]


def _ids_in_broker(settings: Settings) -> set[int]:
    """Job ids of every message Redis holds: waiting in a queue list, or delivered but unacknowledged."""
    import json

    import redis

    from bertq.broker import broker_url

    client = redis.Redis.from_url(broker_url(settings))
    payloads: list[bytes] = []
    for key in client.scan_iter(count=500):
        kind = client.type(key)
        if kind == b"list":
            payloads += client.lrange(key, 0, -1)
        elif kind == b"hash" and key == b"unacked":
            payloads += [json.loads(v)[0] if v.startswith(b"[") else v for v in client.hvals(key)]
    ids: set[int] = set()
    for payload in payloads:
        try:
            message = json.loads(payload) if isinstance(payload, (bytes, str)) else payload
            headers = message.get("headers") or {}
            if str(headers.get("task", "")).startswith("bertq."):
                args = json.loads(str(headers.get("argsrepr", "[]")).replace("'", '"'))
                ids.update(int(a) for a in args[:1])
        except (ValueError, TypeError, AttributeError):
            continue
    return ids


def reconcile(settings: Settings, *, older_than: float = 60.0) -> list[int]:
    """Send again every QUEUED job (older than `older_than` seconds) whose message the broker lost
    (a Redis restart without persistence, a flush). A job sent twice still runs once: the claim decides."""
    from datetime import timedelta

    from sqlalchemy import select

    from bertq.db.models import JobStatus, utcnow
    from bertq.worker.app import make_app, send_job

    factory = sessions(settings)
    cutoff = utcnow() - timedelta(seconds=older_than)
    with factory() as session:
        queued = session.execute(
            select(Job.id, Job.kind, Job.queue, Job.priority).where(Job.status == JobStatus.QUEUED, Job.created_at <= cutoff)
        ).all()
    if not queued:
        return []
    present = _ids_in_broker(settings)
    missing = [row for row in queued if row.id not in present]
    if missing:
        app = make_app(settings)
        for row in missing:
            log.warning("job %s is QUEUED but its message is gone from the broker; sending it again", row.id)
            send_job(app, job_id=row.id, kind=row.kind, queue=row.queue, priority=row.priority)
    return [row.id for row in missing]
