"""Queries on schedules and their fired slots. The session is the caller's, keyword-only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bertq.db.models import Schedule, ScheduleFire


def by_name(*, session: Session, name: str) -> Schedule | None:
    return session.scalar(select(Schedule).where(Schedule.name == name))


def enabled(*, session: Session) -> list[Schedule]:
    return list(session.scalars(select(Schedule).where(Schedule.enabled.is_(True)).order_by(Schedule.name)))


def insert(*, session: Session, name: str, cron: str, timezone: str, argv: dict[str, Any]) -> Schedule:
    schedule = Schedule(name=name, cron=cron, timezone=timezone, argv=argv, enabled=True)
    session.add(schedule)
    session.flush()
    return schedule


def remove(*, session: Session, name: str) -> bool:
    """Disable the schedule and free its name; its fired slots stay in the history."""
    item = by_name(session=session, name=name)
    if item is None:
        return False
    item.enabled = False
    item.name = f"{item.name}.removed-{item.id}"
    return True


def claim_slot(*, session: Session, schedule_id: int, slot: datetime) -> int:
    """Insert (schedule, slot); the pair is unique, so a second beat's insert raises IntegrityError."""
    claim = ScheduleFire(schedule_id=schedule_id, slot=slot)
    session.add(claim)
    session.flush()
    return claim.id


def record_fire(*, session: Session, fire_id: int, job_id: int | None, error: str | None) -> None:
    row = session.get(ScheduleFire, fire_id)
    assert row is not None
    row.job_id, row.error = job_id, error


def last_fire(*, session: Session, schedule_id: int) -> ScheduleFire | None:
    return session.scalars(
        select(ScheduleFire).where(ScheduleFire.schedule_id == schedule_id).order_by(ScheduleFire.slot.desc()).limit(1)
    ).first()
