"""The worker records itself in the registry (`bertq.db.workers`) when ready, renews `last_seen`
from a thread while it runs, and marks itself stopped on shutdown. `bertq workers` lists the rows;
submit's `--queue auto` and the `jobs` listing read them. The same thread runs recovery
(`bertq.db.recovery`): expired leases every beat, the broker scan about every 2 minutes."""

from __future__ import annotations

import logging
import os
import random
import socket
import subprocess
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

log = logging.getLogger("bertq.worker")

_stop = threading.Event()

RECONCILE_SECONDS = float(os.environ.get("BERTQ_RECONCILE_SECONDS", "120"))
"""About how often each worker scans the broker for QUEUED jobs whose message is gone (jittered)."""


def heartbeat_seconds() -> float:
    return float(os.environ.get("BERTQ_WORKER_HEARTBEAT", "10"))


def describe_device() -> dict[str, Any]:
    """cuda with the first visible GPU's name and memory when nvidia-smi sees one, else cpu.

    Asked of nvidia-smi, not torch: the worker's parent process never imports torch (its children
    do, per job), so that it starts fast and holds no GPU context."""
    details: dict[str, Any] = {"device": "cpu", "torch_version": _version_of("torch")}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return details
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return details
    gpus = [line.split(", ") for line in listing.stdout.strip().splitlines() if line.count(", ") == 2]
    if visible:
        wanted = visible.split(",")[0].strip()
        gpus = [g for g in gpus if g[0] == wanted] or gpus
    if listing.returncode == 0 and gpus:
        _, name, memory = gpus[0]
        details.update(device="cuda", gpu_name=name, gpu_memory_mb=int(float(memory)))
    return details


def _version_of(package: str) -> str | None:
    try:
        return version(package).split("+")[0]
    except PackageNotFoundError:
        return None


def start(name: str) -> None:
    """Register `name` and renew its row every `heartbeat_seconds()` until `stop`."""
    from bertq.config import load_settings
    from bertq.db import recovery, workers
    from bertq.db.engine import sessions

    queues = [q for q in os.environ.get("BERTQ_WORKER_QUEUES", "cpu").split(",") if q]
    make_session = sessions(load_settings())
    with make_session() as session, session.begin():
        workers.register(
            session,
            name=name,
            host=socket.gethostname(),
            queues=queues,
            concurrency=int(os.environ.get("BERTQ_WORKER_CONCURRENCY", "1")),
            bertq_version=version("bertq"),
            **describe_device(),
        )
    log.info("registered as %s (queues %s)", name, ",".join(queues))

    settings = load_settings()

    def renew() -> None:
        next_reconcile = time.monotonic() + RECONCILE_SECONDS * random.uniform(0.5, 1.5)
        while not _stop.wait(heartbeat_seconds()):
            try:
                with make_session() as session, session.begin():
                    workers.seen(session, name)
                # Recovery without a single beat: any live worker requeues a dead peer's jobs.
                requeued = recovery.reap_expired_leases(settings)
                if requeued:
                    log.warning("requeued jobs %s: their worker's lease expired", requeued)
                if time.monotonic() >= next_reconcile:  # a scan of the broker: rarely, and not in step
                    next_reconcile = time.monotonic() + RECONCILE_SECONDS * random.uniform(0.5, 1.5)
                    recovery.reconcile(settings, older_than=RECONCILE_SECONDS)
            except Exception:  # noqa: BLE001 - the database may be away for a while; try again next beat
                log.warning("could not renew the registry row or recover lost jobs", exc_info=True)

    threading.Thread(target=renew, name="bertq-registry", daemon=True).start()


def stop(name: str) -> None:
    from bertq.config import load_settings
    from bertq.db import workers
    from bertq.db.engine import sessions

    _stop.set()
    with sessions(load_settings())() as session, session.begin():
        workers.stopped(session, name)
