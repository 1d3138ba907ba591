"""The module `celery -A` points at (`bertq worker` does this for you)."""

from __future__ import annotations

import logging

from celery.signals import worker_ready, worker_shutting_down

from bertq.worker import registry
from bertq.worker.app import make_app
from bertq.worker.context import bound_native_caches

bound_native_caches()  # before a pool process loads torch
app = make_app()
log = logging.getLogger("bertq.worker")


@worker_shutting_down.connect
def _checkpoint_running_jobs(sender: str | None = None, **_: object) -> None:
    """SIGTERM (a deploy): ask this worker's running training jobs to save a checkpoint and go back to
    the queue, instead of keeping the shutdown waiting for hours or losing their progress."""
    from bertq.config import load_settings
    from bertq.db.engine import sessions
    from bertq.db.jobs import request_preemption

    try:
        with sessions(load_settings())() as session, session.begin():
            jobs = request_preemption(session=session, worker_prefix=f"{sender}/")
        if jobs:
            log.warning("shutting down: jobs %s will checkpoint and be requeued", jobs)
    except Exception:  # noqa: BLE001 - a shutdown must go on even if the database is away
        log.exception("could not ask running jobs to checkpoint")


@worker_ready.connect
def _register(sender: object = None, **_: object) -> None:
    """Record this worker (queues, device, versions) in the registry, and keep it fresh."""
    try:
        registry.start(str(getattr(sender, "hostname", None) or "unknown"))
    except Exception:  # noqa: BLE001 - a worker without a registry row still runs jobs
        log.exception("could not register in the worker registry")


@worker_shutting_down.connect
def _unregister(sender: str | None = None, **_: object) -> None:
    try:
        registry.stop(str(sender))
    except Exception:  # noqa: BLE001 - a shutdown must go on even if the database is away
        log.warning("could not mark this worker stopped in the registry", exc_info=True)
