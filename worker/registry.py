"""The worker records itself in the registry (`bertq.db.workers`) when ready, renews `last_seen`
from a thread while it runs, and marks itself stopped on shutdown. `bertq workers` lists the rows;
submit's `--queue auto` and the `jobs` listing read them."""

from __future__ import annotations

import logging
import os
import socket
import threading
from importlib.metadata import version
from typing import Any

log = logging.getLogger("bertq.worker")

_stop = threading.Event()


def heartbeat_seconds() -> float:
    return float(os.environ.get("BERTQ_WORKER_HEARTBEAT", "10"))


def describe_device() -> dict[str, Any]:
    """cuda with the first GPU's name and memory when torch sees one, else cpu."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a worker dependency
        return {"device": "cpu", "torch_version": None}
    details: dict[str, Any] = {"device": "cpu", "torch_version": torch.__version__.split("+")[0]}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        details.update(device="cuda", gpu_name=properties.name, gpu_memory_mb=properties.total_memory // 2**20)
    return details


def start(name: str) -> None:
    """Register `name` and renew its row every `heartbeat_seconds()` until `stop`."""
    from bertq.config import load_settings
    from bertq.db import workers
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

    def renew() -> None:
        while not _stop.wait(heartbeat_seconds()):
            try:
                with make_session() as session, session.begin():
                    workers.seen(session, name)
            except Exception:  # noqa: BLE001 - the database may be away for a while; try again next beat
                log.warning("could not renew the worker registry row", exc_info=True)

    threading.Thread(target=renew, name="bertq-registry", daemon=True).start()


def stop(name: str) -> None:
    from bertq.config import load_settings
    from bertq.db import workers
    from bertq.db.engine import sessions

    _stop.set()
    with sessions(load_settings())() as session, session.begin():
        workers.stopped(session, name)
