"""What a job function may do to the outside world, and two ways to provide it.

A job function is `run_<kind>(spec_values, ctx) -> result`. It reports progress, metrics and
artifacts through `ctx` and never touches the database itself, so the same function runs:
- in a worker, with `runner.DbContext`: claimed, fenced by its attempt number, heart-beating;
- in-process, with `LocalContext`: everything it reports is kept in memory, so a test (or a
  notebook) calls the job logic without Redis, a worker or a job row, as huey's `call_local` does.

Each job's log goes to its own file (`job_log`), even when two jobs run in one process at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bertq.config import Settings, load_settings
from bertq.sharding import Shard


@dataclass(frozen=True)
class ShardRecord:
    """One shard of a bulk job, as its last step reads it: what it covers and what it committed."""

    index: int
    path: str
    start: int
    end: int
    first_line: int
    records: int
    output_path: str | None
    output_sha256: str | None


class JobContext(Protocol):
    settings: Settings
    job_id: int
    attempt: int
    kind: str
    spec: dict[str, Any]
    workdir: Path
    log: logging.Logger

    @property
    def should_stop(self) -> bool:
        """The attempt was superseded (cancelled, or taken over): stop without writing results."""

    @property
    def preempted(self) -> bool:
        """The worker is shutting down: a training job should checkpoint now and raise Preempted."""

    def write(self, action: Callable[[Any], None] | None = None) -> None:
        """Check that this attempt is still current (and run `action` in the same transaction)."""

    def heartbeat(self) -> None: ...
    def progress(self, fraction: float, *, force: bool = False, **detail: Any) -> None: ...
    def metrics(
        self, values: dict[str, float], *, split: str | None = None, step: int | None = None, epoch: float | None = None
    ) -> None: ...
    def artifact(self, kind: str, path: Path) -> None: ...
    def checkpoint_of(self, job_id: int | None) -> str | None: ...
    def artifact_of(self, job_id: int | None, kind: str) -> str | None: ...
    def metrics_of(self, job_id: int) -> dict[str, float]: ...
    def resumed_from(self, checkpoint: str) -> None: ...
    def forget_metrics_after(self, step: int) -> None: ...
    def shard_progress(self, parent: int, index: int, done: int) -> None: ...
    def commit_shard_output(self, parent: int, index: int, *, path: str, sha256: str, rows: int) -> None: ...
    def add_shards(self, parent: int, shards: list[Shard]) -> None: ...
    def shards(self) -> list[ShardRecord]: ...


@dataclass
class LocalContext:
    """An in-memory context: run a job function in this process, then read what it reported.

    Other jobs' checkpoints, artifacts and metrics (a teacher's, a shard's) are given up front in
    `artifacts_of` and `metrics_of_jobs`."""

    workdir: Path
    spec: dict[str, Any] = field(default_factory=dict)
    kind: str = "local"
    job_id: int = 0
    attempt: int = 1
    settings: Settings = field(default_factory=load_settings)
    artifacts_of: dict[tuple[int, str], str] = field(default_factory=dict)
    metrics_of_jobs: dict[int, dict[str, float]] = field(default_factory=dict)
    shard_rows: list[ShardRecord] = field(default_factory=list)
    planned_shards: list[Shard] = field(default_factory=list)
    reported_progress: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    reported_metrics: list[tuple[dict[str, float], str | None, int | None]] = field(default_factory=list)
    reported_artifacts: list[tuple[str, Path]] = field(default_factory=list)
    resumed: str | None = None
    stop: bool = False

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = logging.getLogger(f"bertq.job.local.{id(self)}")

    @property
    def should_stop(self) -> bool:
        return self.stop

    @property
    def preempted(self) -> bool:
        return False

    def write(self, action: Callable[[Any], None] | None = None) -> None:
        if action is not None:
            raise TypeError("LocalContext has no database: report through the named methods")

    def heartbeat(self) -> None:
        pass

    def progress(self, fraction: float, *, force: bool = False, **detail: Any) -> None:
        self.reported_progress.append((fraction, detail))

    def metrics(
        self, values: dict[str, float], *, split: str | None = None, step: int | None = None, epoch: float | None = None
    ) -> None:
        self.reported_metrics.append((dict(values), split, step))

    def artifact(self, kind: str, path: Path) -> None:
        self.reported_artifacts.append((kind, path))
        self.artifacts_of[(self.job_id, kind)] = str(path)

    def checkpoint_of(self, job_id: int | None) -> str | None:
        return self.artifact_of(job_id, "checkpoint")

    def artifact_of(self, job_id: int | None, kind: str) -> str | None:
        return None if job_id is None else self.artifacts_of.get((job_id, kind))

    def metrics_of(self, job_id: int) -> dict[str, float]:
        return dict(self.metrics_of_jobs.get(job_id, {}))

    def resumed_from(self, checkpoint: str) -> None:
        self.resumed = checkpoint

    def forget_metrics_after(self, step: int) -> None:
        self.reported_metrics = [m for m in self.reported_metrics if m[2] is None or m[2] <= step]

    def shard_progress(self, parent: int, index: int, done: int) -> None:
        self.reported_progress.append((0.0, {"shard": index, "rows": done}))

    def commit_shard_output(self, parent: int, index: int, *, path: str, sha256: str, rows: int) -> None:
        self.reported_artifacts.append(("shard_output", Path(path)))

    def add_shards(self, parent: int, shards: list[Shard]) -> None:
        self.planned_shards = list(shards)

    def shards(self) -> list[ShardRecord]:
        return list(self.shard_rows)

    def latest_metrics(self) -> dict[str, float]:
        """name -> the last value reported, as `bertq show` would list them."""
        latest: dict[str, float] = {}
        for values, _, _ in self.reported_metrics:
            latest.update(values)
        return latest


def call_local(kind: str, spec_values: dict[str, Any], ctx: LocalContext) -> dict[str, Any]:
    """Run the job function of `kind` in this process with an in-memory context."""
    from bertq.worker.runner import load_job_function

    ctx.kind, ctx.spec = kind, spec_values
    with job_log(ctx.workdir / "job.log", ctx.job_id):
        return load_job_function(kind)(spec_values, ctx) or {}


# ---------------------------------------------------------------------------------------------
# Per-job logs

_running = threading.local()
"""The job the current thread works for (set by `job_log`, and by `adopt` in a job's helper threads)."""


def adopt(job_id: int) -> None:
    """Count this thread's log records as job `job_id`'s (a heartbeat thread, a loader thread)."""
    _running.job_id = job_id


class _ThisJobOnly(logging.Filter):
    def __init__(self, job_id: int):
        super().__init__()
        self.job_id = job_id

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(_running, "job_id", None) == self.job_id


@contextlib.contextmanager
def job_log(path: Path, job_id: int) -> Iterator[None]:
    """Write the `bertq` loggers' records from this job's threads into `path`.

    The handler sits on the shared `bertq` logger, so it sees every thread's records; the filter
    keeps those of threads working for this job. Without it, two jobs running at once in one
    worker process (`--pool threads`) wrote each other's lines into both logs."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_ThisJobOnly(job_id))
    logger = logging.getLogger("bertq")
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    previous = getattr(_running, "job_id", None)
    adopt(job_id)
    try:
        yield
    finally:
        _running.job_id = previous
        logger.removeHandler(handler)
        handler.close()


def memory_mb(field: str) -> float:
    """This process's peak (VmHWM) or current (VmRSS) resident memory. Not getrusage's ru_maxrss:
    Linux carries that across fork and exec, so it would report the worker process's peak, not the
    job's."""
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_memory() -> None:
    """Start VmHWM again from the current resident size (Linux `clear_refs` 5), so that a pool
    process's peak afterwards is this job's, not an earlier job's."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


ONEDNN_PRIMITIVE_CACHE = "256"
"""oneDNN's cache of compiled kernels in a worker (its default is 1,024). bf16 matrix products build
kernels per layer and input shape, and bulk inference meets new shapes in every shard. In a scratch
probe (MiniLM in bf16, 20,000-record shards in one process), the process's size after each shard grew
by 276 MB over shards 2-4 (858 to 1,134 MB) before it levelled; at 256 it grew by 160 MB (774 to 934
MB), each shard taking the same 16-17 s."""


def bound_native_caches() -> None:
    """In a worker, before torch is loaded: cap oneDNN's kernel cache (ONEDNN_PRIMITIVE_CACHE_CAPACITY
    set by the operator wins)."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_PRIMITIVE_CACHE)


def release_memory() -> None:
    """After a job, in a pool process that runs the next one: collect cycles and hand the heap's free
    pages back to the system (glibc keeps them otherwise, and a long-lived worker's resident size
    would grow with every job's freed texts and tensors)."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
