"""The worker registry: each worker process records itself and renews `last_seen`; submit, `jobs`
and `show` ask it which queues have a live worker and on what device."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bertq.db.models import WorkerRow, utcnow

LIVE_SECONDS = 45.0
"""A worker not seen for this long is taken as gone (it renews every BERTQ_WORKER_HEARTBEAT, 10 s)."""


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    host: str
    queues: tuple[str, ...]
    device: str
    gpu_name: str | None
    gpu_memory_mb: int | None
    concurrency: int
    bertq_version: str
    torch_version: str | None
    started_at: datetime
    last_seen: datetime
    stopped_at: datetime | None
    live: bool


def register(session: Session, *, name: str, host: str, queues: list[str], device: str, **details: object) -> None:
    """Insert or refresh this worker's row (a restarted worker keeps its name)."""
    row = session.get(WorkerRow, name)
    now = utcnow()
    values = dict(host=host, queues=",".join(queues), device=device, started_at=now, last_seen=now, stopped_at=None)
    values.update(details)  # type: ignore[arg-type]
    if row is None:
        session.add(WorkerRow(name=name, **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)


def seen(session: Session, name: str) -> None:
    session.execute(update(WorkerRow).where(WorkerRow.name == name).values(last_seen=utcnow(), stopped_at=None))


def stopped(session: Session, name: str) -> None:
    session.execute(update(WorkerRow).where(WorkerRow.name == name).values(stopped_at=utcnow()))


def list_workers(session: Session, *, include_gone: bool = False) -> list[WorkerInfo]:
    cutoff = utcnow() - timedelta(seconds=LIVE_SECONDS)
    rows = session.scalars(select(WorkerRow).order_by(WorkerRow.name)).all()
    infos = [
        WorkerInfo(
            name=r.name,
            host=r.host,
            queues=tuple(q for q in r.queues.split(",") if q),
            device=r.device,
            gpu_name=r.gpu_name,
            gpu_memory_mb=r.gpu_memory_mb,
            concurrency=r.concurrency,
            bertq_version=r.bertq_version,
            torch_version=r.torch_version,
            started_at=r.started_at,
            last_seen=r.last_seen,
            stopped_at=r.stopped_at,
            live=r.stopped_at is None and r.last_seen >= cutoff,
        )
        for r in rows
    ]
    return infos if include_gone else [w for w in infos if w.live]


def live_queues(session: Session) -> dict[str, set[str]]:
    """Queue → the devices of the live workers consuming it."""
    queues: dict[str, set[str]] = {}
    for worker in list_workers(session):
        for queue in worker.queues:
            queues.setdefault(queue, set()).add(worker.device)
    return queues
