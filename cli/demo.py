"""`bertq demo`: the whole path once, on the embedded defaults."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bertq.demo import write_demo_data


def run_demo(*, epochs: float = 2.0, echo: Callable[[str], Any] = print) -> int:
    """The whole path on the embedded defaults: data, Redis, a worker process, a real fine-tune of
    `minilm`, its metrics. Returns the job's exit status (0 when it SUCCEEDED)."""
    import os
    import signal
    import subprocess
    import sys

    from bertq.broker import broker_url
    from bertq.config import load_settings
    from bertq.db.submit import submit
    from bertq.specs import build_finetune_spec

    settings = load_settings()
    train, dev = write_demo_data(settings.home / "demo-data")
    echo(f"1. data: {train} and {dev} (synthetic movie-review sentences, made by bertq)")
    broker_url(settings)
    echo(
        f"2. broker: {'embedded Redis in ' + str(settings.home / 'redis') if settings.uses_embedded_redis else 'BERTQ_BROKER_URL'}"
    )
    log_path = settings.home / "demo-worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "bertq.cli", "worker", "--queues", "demo", "--loglevel", "WARNING"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    echo(f"3. worker: pid {worker.pid}, consuming queue `demo` (log: {log_path})")
    try:
        spec = build_finetune_spec(
            model="minilm",
            task="sst2",
            train=str(train),
            eval=str(dev),
            epochs=epochs,
            batch_size=16,
            max_length=64,
            evaluate=False,
        )
        job_id = submit("finetune", spec.to_dict(), queue="demo", priority=5, settings=settings)
        echo(f"4. submitted job {job_id}: fine-tune minilm (all-MiniLM-L6-v2) for {epochs:g} epochs\n")
        status = subprocess.call([sys.executable, "-m", "bertq.cli", "wait", str(job_id)])
        echo("")
        subprocess.call([sys.executable, "-m", "bertq.cli", "show", str(job_id)])
        echo(f"\nMore: `bertq jobs`, `bertq show {job_id} --json`, `bertq logs {job_id}`")
        return status
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
