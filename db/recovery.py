"""Recovery: jobs whose worker vanished (lease expired) go back to the queue, and QUEUED jobs whose
broker message was lost are sent again.

Celery's Redis transport would redeliver such a message only after its visibility timeout (an hour
by default); the lease is much shorter, so the reaper brings lost work back sooner. Every worker runs
both (`bertq.worker.registry`), and so does `bertq beat`: running them in several processes at once
is harmless, since each requeue is a conditional UPDATE and a job sent twice still runs once (the
claim decides). So workers alone recover a killed peer within about one lease.
"""

from __future__ import annotations

import logging
from typing import Any

from bertq.config import Settings
from bertq.db import jobs as job_queries
from bertq.db.engine import sessions
from bertq.db.models import Job
from bertq.dispatch import Delivery, dispatch

log = logging.getLogger("bertq.reaper")


def reap_expired_leases(settings: Settings) -> list[int]:
    """Requeue (or fail, when out of attempts) every job whose lease has expired; return requeued ids."""
    factory = sessions(settings)
    requeued: list[Delivery] = []
    with factory() as session, session.begin():
        for job_id in job_queries.expired_leases(session=session):
            if job_queries.requeue_lost(session=session, job_id=job_id):
                row = session.get(Job, job_id)
                assert row is not None
                requeued.append(Delivery(row.id, row.kind, row.queue, row.priority))
    for job in requeued:
        log.warning("job %s lost its worker (lease expired); requeued", job.id)
    if requeued:
        dispatch(requeued, settings=settings)
    return [job.id for job in requeued]


UNACKED_STALE_SECONDS = 60.0
"""A delivery unacknowledged this long whose job is still QUEUED has no live consumer: a worker claims
its job within moments of receiving it (one message a process at a time), so the consumer died (a
SIGKILLed worker's delivery stays in Redis until the visibility timeout, an hour by default)."""


def _ids_in_broker(settings: Settings, *, stale_after: float = UNACKED_STALE_SECONDS) -> set[int]:
    """Job ids of every message Redis holds: waiting in a queue list, or delivered but unacknowledged
    less than `stale_after` seconds ago (an older delivery of a job still QUEUED is a dead consumer's)."""
    import json
    import time

    import redis

    from bertq.broker import broker_url

    client = redis.Redis.from_url(broker_url(settings))
    payloads: list[Any] = []
    for key in client.scan_iter(count=500):
        kind = client.type(key)
        if kind == b"list":
            payloads += client.lrange(key, 0, -1)
        elif kind == b"hash" and key == b"unacked":
            scores: Any = client.zrange("unacked_index", 0, -1, withscores=True)
            delivered = dict(scores)  # delivery tag -> when it was delivered
            oldest = time.time() - stale_after
            unacked: dict[bytes, bytes] = client.hgetall(key)  # type: ignore[assignment]
            values = [v for tag, v in unacked.items() if delivered.get(tag, time.time()) >= oldest]
            payloads += [json.loads(v)[0] if v.startswith(b"[") else v for v in values]
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
    with sessions(settings)() as session:
        queued = job_queries.queued_since(session=session, seconds=older_than)
    if not queued:
        return []
    present = _ids_in_broker(settings)
    missing = [job for job in queued if job.id not in present]
    for job in missing:
        log.warning("job %s is QUEUED but its message is gone from the broker; sending it again", job.id)
    if missing:
        dispatch(missing, settings=settings)
    return [job.id for job in missing]
