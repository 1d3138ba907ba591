"""Cron schedules stored in the database, fired by `bertq beat`, each slot exactly once.

A slot is claimed by inserting (schedule, slot) into `schedule_fires`, whose pair is unique: if two
beat processes run by mistake, one insert wins and the other finds the slot taken. The winner then
submits the schedule's command as `bertq` would, with BERTQ_RUN_DATE set to the slot's date, so
`{date}` in an --output names the night it was meant for.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bertq.config import Settings
from bertq.db import schedules as schedule_queries
from bertq.db.engine import sessions
from bertq.db.models import Schedule, utcnow
from bertq.errors import SpecError
from bertq.jobkinds import SUBMITTABLE

log = logging.getLogger("bertq.schedules")


def check_schedule(name: str, cron: str, timezone: str, args: list[str]) -> None:
    from croniter import croniter

    problems = []
    if not name or len(name) > 128 or not all(c.isalnum() or c in "-_." for c in name):
        problems.append(f"schedule name {name!r}: use letters, digits, '-', '_' or '.' (at most 128)")
    if not croniter.is_valid(cron):
        problems.append(
            f'--cron {cron!r} does not parse; five fields: minute hour day-of-month month day-of-week, e.g. "0 2 * * *"'
        )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"--timezone {timezone!r} is not a known time zone (e.g. UTC, Europe/Paris)")
    if len(args) < 2 or args[0] != "submit" or args[1] not in SUBMITTABLE:
        problems.append(
            f"after `--` give the submit command to run, e.g. `-- submit infer --model 7 ...` (got {' '.join(args) or 'nothing'})"
        )
    if problems:
        raise SpecError(problems)


def add_schedule(
    *, session: Session, name: str, cron: str, timezone: str, args: list[str], cwd: str | None = None
) -> Schedule:
    """Store the schedule; its command runs later from `cwd` (default: the folder it is added from),
    so relative paths in it (`--input corpus.txt`, `--output out/{date}`) mean what they meant here."""
    check_schedule(name, cron, timezone, args)
    if schedule_queries.by_name(session=session, name=name) is not None:
        raise SpecError([f"a schedule named {name!r} exists; remove it first or choose another name"])
    argv = {"args": args, "cwd": cwd or os.getcwd()}
    return schedule_queries.insert(session=session, name=name, cron=cron, timezone=timezone, argv=argv)


def latest_slot(schedule: Schedule, now: datetime) -> datetime | None:
    """The most recent slot at or before `now` (naive UTC) and after the schedule was created."""
    from croniter import croniter

    zone = ZoneInfo(schedule.timezone)
    local_now = now.replace(tzinfo=UTC).astimezone(zone)
    previous = croniter(schedule.cron, local_now).get_prev(datetime)
    # croniter's get_prev is strictly before `now`; a slot exactly at `now` counts as due.
    if croniter.match(schedule.cron, local_now.replace(second=0, microsecond=0)):
        previous = local_now.replace(second=0, microsecond=0)
    slot = previous.astimezone(UTC).replace(tzinfo=None)
    return slot if slot >= schedule.created_at.replace(second=0, microsecond=0) else None


@dataclass(frozen=True)
class Fired:
    schedule: str
    slot: datetime
    job_id: int | None
    error: str | None


Submitter = Callable[[list[str], dict[str, str], str | None], tuple[int | None, str | None]]
"""Runs a schedule's `bertq submit ...` arguments with extra environment in a folder; returns the job
id, or the error. The CLI gives an in-process one (`bertq beat`, `schedule run-now`): no second
Python start-up per firing."""


def submit_in_subprocess(args: list[str], env: dict[str, str], cwd: str | None) -> tuple[int | None, str | None]:
    result = subprocess.run(
        [sys.executable, "-m", "bertq.cli", *args], env={**os.environ, **env}, capture_output=True, text=True, cwd=cwd
    )
    if result.returncode == 0:
        return int(json.loads(result.stdout)["id"]), None
    return None, (result.stderr or result.stdout).strip()[-2000:] or f"exit status {result.returncode}"


def fire_due(settings: Settings, *, now: datetime | None = None, submitter: Submitter | None = None) -> list[Fired]:
    """Fire each enabled schedule's latest due slot that has not been fired. Missed slots older than
    the latest are not replayed: a beat that was down for a week submits one run, not seven."""
    now = now or utcnow()
    factory = sessions(settings)
    with factory() as session:
        schedules = schedule_queries.enabled(session=session)
    fired = []
    for schedule in schedules:
        slot = latest_slot(schedule, now)
        if slot is not None:
            result = fire(settings, schedule, slot, submitter)
            if result is not None:
                fired.append(result)
    return fired


def fire(settings: Settings, schedule: Schedule, slot: datetime, submitter: Submitter | None = None) -> Fired | None:
    """Claim (schedule, slot) and submit; None when another beat already fired this slot."""
    factory = sessions(settings)
    try:
        with factory() as session, session.begin():
            fire_id = schedule_queries.claim_slot(session=session, schedule_id=schedule.id, slot=slot)
    except IntegrityError:
        return None
    run_date = slot.replace(tzinfo=UTC).astimezone(ZoneInfo(schedule.timezone)).date()
    env = {**settings.as_env(), "BERTQ_RUN_DATE": run_date.isoformat()}
    args = [*schedule.argv["args"], "--json"]
    cwd = schedule.argv.get("cwd")  # schedules stored before the folder was kept run from beat's own
    job_id, error = None, None
    if cwd and not os.path.isdir(cwd):
        error = (
            f"the folder this schedule was added from, {cwd}, is gone; relative paths in its command "
            "cannot be found. Remove the schedule and add it again (with absolute paths, from any folder)"
        )
    else:
        job_id, error = (submitter or submit_in_subprocess)(args, env, cwd)
    with factory() as session, session.begin():
        schedule_queries.record_fire(session=session, fire_id=fire_id, job_id=job_id, error=error)
    log.info("schedule %s slot %s: %s", schedule.name, slot, f"job {job_id}" if job_id else f"failed: {error}")
    return Fired(schedule.name, slot, job_id, error)


def run_now(settings: Settings, name: str, submitter: Submitter | None = None) -> Fired:
    factory = sessions(settings)
    with factory() as session:
        schedule = schedule_queries.by_name(session=session, name=name)
    if schedule is None:
        raise SpecError([f"no schedule named {name!r}; `bertq schedule list` shows them"])
    result = fire(settings, schedule, utcnow(), submitter)
    assert result is not None
    return result
