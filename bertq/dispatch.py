"""Delivering jobs to workers: the Celery app (JSON only, late acks, one message at a time, queues
`gpu` and `cpu`) and `dispatch`, the one way a job id is sent to its queue.

Messages carry a job id and nothing else; the database row holds the spec. The CLI (submit), the
runner (released dependants, retries), the reaper and reconcile all send through `dispatch`. This
module imports neither torch nor transformers, so the process that forks worker children never
touches CUDA.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from celery import Celery
from kombu import Queue

from bertq.broker import broker_url
from bertq.config import Settings, load_settings

QUEUES = ("gpu", "cpu")
DEFAULT_QUEUE = "cpu"


def task_name(kind: str) -> str:
    return f"bertq.{kind}"


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or load_settings()
    app = Celery("bertq", broker=broker_url(settings), include=["bertq.worker.tasks"])  # tasks: worker side only
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],  # a pickled message is refused, never deserialised
        result_serializer="json",
        event_serializer="json",
        task_ignore_result=True,  # results live in the database
        task_acks_late=True,  # a message is acknowledged only after its job ran
        task_reject_on_worker_lost=True,  # ...and redelivered if the worker process died
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # kombu looks for messages past their visibility timeout every interval x throttle
            # seconds (100 s by default); scan often enough for the configured timeout.
            "unacked_restore_interval": max(1.0, min(10.0, settings.visibility_timeout / 2)),
            "unacked_restore_throttle": 1,
            "queue_order_strategy": "priority",
            "priority_steps": list(range(10)),
            "sep": ":",
        },
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue=DEFAULT_QUEUE,
        task_create_missing_queues=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    return app


class Deliverable(Protocol):
    """What `dispatch` needs of a job: a `Job` row, or any record with these fields."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def priority(self) -> int: ...


@dataclass(frozen=True)
class Delivery:
    """A job to send, detached from any database session."""

    id: int
    kind: str
    queue: str
    priority: int


def dispatch(
    jobs: Iterable[Deliverable],
    *,
    settings: Settings | None = None,
    app: Celery | None = None,
    countdown: float | None = None,
) -> None:
    """Send each job's id to its queue, at its priority, now or after `countdown` seconds."""
    app = app or make_app(settings)
    for job in jobs:
        send_job(app, job_id=job.id, kind=job.kind, queue=job.queue, priority=job.priority, countdown=countdown)


def send_job(app: Celery, *, job_id: int, kind: str, queue: str, priority: int, countdown: float | None = None) -> None:
    """Deliver a job id to its queue, now or after `countdown` seconds. `priority` is 0 (lowest)
    to 9 (most urgent)."""
    # Celery's Redis transport serves priority 0 first, so bertq's scale is flipped here.
    app.send_task(task_name(kind), args=[job_id], queue=queue, priority=9 - priority, countdown=countdown)
