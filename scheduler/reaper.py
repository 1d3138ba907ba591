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
