"""`bertq beat`: the periodic duties, one process per deployment.

Each round requeues jobs whose worker was lost (expired leases) and fires due schedules; every
`reconcile_every` seconds it also resends QUEUED jobs whose message the broker lost. A round that
fails (the database or Redis away) is skipped and tried again: beat outlives outages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bertq.config import Settings
from bertq.scheduler.reaper import reap_expired_leases, reconcile
from bertq.scheduler.schedules import Fired, Submitter, fire_due

log = logging.getLogger("bertq.beat")


@dataclass
class Round:
    requeued: list[int] = field(default_factory=list)
    resent: list[int] = field(default_factory=list)
    fired: list[Fired] = field(default_factory=list)

    def describe(self) -> str:
        return f"requeued: {self.requeued}; resent: {self.resent}; fired: {[(f.schedule, f.job_id, f.error) for f in self.fired]}"


def run_beat(
    settings: Settings,
    *,
    interval: float,
    reconcile_every: float,
    reconcile_older_than: float,
    once: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    submitter: Submitter | None = None,
) -> Round:
    """Run rounds every `interval` seconds, for ever (or one round with `once`, which raises
    instead of skipping a failed round, and returns what it did)."""
    next_reconcile = clock()
    last = Round()
    while True:
        try:
            current = Round(
                requeued=reap_expired_leases(settings),
                fired=fire_due(settings, submitter=submitter),
                resent=last.resent,
            )
            if clock() >= next_reconcile:  # a scan of the broker: not every round
                current.resent = reconcile(settings, older_than=reconcile_older_than)
                next_reconcile = clock() + reconcile_every
            last = current
        except Exception as error:  # noqa: BLE001 - the database or Redis away: try again next round
            if once:
                raise
            log.warning("round skipped: %s", str(error).splitlines()[0])
        else:
            if once:
                return last
        sleep(interval)
