"""The lease reaper and the broker reconciliation live in `bertq.db.recovery`, where every worker
can run them too (recovery needs no single beat); beat calls them from here."""

from __future__ import annotations

from bertq.db.recovery import _ids_in_broker, reap_expired_leases, reconcile

__all__ = ["_ids_in_broker", "reap_expired_leases", "reconcile"]
