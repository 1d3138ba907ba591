"""Running one job: claim it, call its job function with a context, record the outcome.

The job functions (`bertq.worker.jobs.*`) are plain functions of (spec, ctx); this module is the
only place that knows about leases, attempts and heartbeats.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from bertq import safety, store
from bertq.config import Settings, load_settings
from bertq.db import jobs as job_queries
from bertq.db import shards as shard_queries
from bertq.db.engine import sessions
from bertq.db.models import Job, JobStatus
from bertq.dispatch import Delivery, dispatch
from bertq.errors import AttemptSuperseded, BertqError, Preempted
from bertq.jobkinds import job_kind
from bertq.sharding import Shard
from bertq.worker import data_parallel, faults, loading
from bertq.worker.context import JobContext, ShardRecord, adopt, job_log, release_memory

log = logging.getLogger("bertq.worker")

PROGRESS_INTERVAL_SECONDS = 1.0


class DbContext:
    """The context of a job run by a worker: every report goes to the database.

    Every write is fenced by the attempt number; once the attempt is superseded (cancelled, or its
    lease taken over) `should_stop` turns true and writes raise AttemptSuperseded.
    """

    def __init__(self, *, settings: Settings, job_id: int, attempt: int, kind: str, spec: dict[str, Any]):
        self.settings = settings
        self.job_id = job_id
        self.attempt = attempt
        self.kind = kind
        self.spec = spec
        self.workdir = job_folder(settings, job_id)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = logging.getLogger(f"bertq.job.{job_id}")
        self._sessions = sessions(settings)
        self._superseded = threading.Event()
        self._preempted = threading.Event()
        self._last_progress = 0.0
        self._last_heartbeat = time.monotonic()

    @property
    def should_stop(self) -> bool:
        return self._superseded.is_set()

    @property
    def preempted(self) -> bool:
        """The worker is shutting down: a training job should checkpoint now and raise Preempted."""
        return self._preempted.is_set()

    def write(self, action: Callable[[Session], None] | None = None) -> None:
        """Run `action` in one transaction that first checks this attempt is still current."""
        if self.should_stop:
            raise AttemptSuperseded(f"job {self.job_id}: attempt {self.attempt} was superseded")
        try:
            with self._sessions() as session, session.begin():
                job_queries.fence(
                    session=session, job_id=self.job_id, attempt=self.attempt, lease_seconds=self.settings.lease_seconds
                )
                if action is not None:
                    action(session)
        except AttemptSuperseded:
            self._superseded.set()
            raise

    def progress(self, fraction: float, *, force: bool = False, **detail: Any) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_INTERVAL_SECONDS:
            return
        self._last_progress = now
        self.write(lambda s: job_queries.set_progress(session=s, job_id=self.job_id, progress=fraction, detail=detail))

    def metrics(
        self, values: dict[str, float], *, split: str | None = None, step: int | None = None, epoch: float | None = None
    ) -> None:
        self.write(
            lambda s: job_queries.add_metrics(
                session=s, job_id=self.job_id, attempt=self.attempt, values=values, split=split, step=step, epoch=epoch
            )
        )

    def artifact(self, kind: str, path: Path) -> None:
        """Record an artifact the job wrote; with an artifact store, upload it first and record its URL."""
        size, digest = size_and_digest(path)
        where = str(path)
        if self.settings.artifact_store:
            relative = path.relative_to(self.workdir).as_posix() if path.is_relative_to(self.workdir) else path.name
            where = store.join(self.settings.artifact_store, "jobs", str(self.job_id), relative)
            self.write()  # still this attempt's job: a superseded attempt uploads nothing
            store.upload(path, where)
            store.cache(self.settings.home).adopt(path, where, digest)
        self.write(
            lambda s: job_queries.add_artifact(
                session=s, job_id=self.job_id, kind=kind, path=where, size_bytes=size, sha256=digest
            )
        )

    def publish_log(self) -> None:
        """With an artifact store, copy the job's log there, so `bertq logs` works from any machine."""
        log_file = self.workdir / "job.log"
        if self.settings.artifact_store and log_file.is_file():
            store.upload(log_file, store.join(self.settings.artifact_store, "jobs", str(self.job_id), "job.log"))

    def resumed_from(self, checkpoint: str) -> None:
        self.write(
            lambda s: job_queries.record_resume(
                session=s, job_id=self.job_id, attempt=self.attempt, checkpoint=checkpoint
            )
        )

    def forget_metrics_after(self, step: int) -> None:
        self.write(lambda s: job_queries.forget_metrics_after(session=s, job_id=self.job_id, step=step))

    def shard_progress(self, parent: int, index: int, done: int) -> None:
        self.write(lambda s: shard_queries.report_rows(session=s, parent=parent, index=index, done=done))

    def commit_shard_output(self, parent: int, index: int, *, path: str, sha256: str, rows: int) -> None:
        self.write(
            lambda s: shard_queries.commit_output(
                session=s, parent=parent, index=index, path=path, sha256=sha256, rows=rows
            )
        )

    def add_shards(self, parent: int, shards: list[Shard]) -> None:
        """Add bulk job `parent`'s shard jobs (once, fenced), then send them to the broker. If the
        broker is away after the commit, the rows are there: recovery re-sends queued jobs."""
        ready: list[Delivery] = []

        def action(session: Session) -> None:
            ready[:] = shard_queries.add_shards(session=session, parent=parent, shards=shards, settings=self.settings)

        self.write(action)
        try:
            dispatch(ready, settings=self.settings)
        except Exception as error:  # noqa: BLE001 - committed rows are recovered by the reconcile pass
            self.log.warning("the shard jobs of job %s are planned but not yet sent (%s); recovery will", parent, error)

    def shards(self) -> list[ShardRecord]:
        with self._sessions() as session:
            return [
                ShardRecord(r.index, r.path, r.start, r.end, r.first_line, r.records, r.output_path, r.output_sha256)
                for r in shard_queries.shards_of(session=session, job_id=self.job_id)
            ]

    def checkpoint_of(self, job_id: int | None) -> str | None:
        """The checkpoint folder another job (this one's input) recorded."""
        return self.artifact_of(job_id, "checkpoint")

    def artifact_of(self, job_id: int | None, kind: str) -> str | None:
        """Another job's artifact as a local path: one in the artifact store is downloaded once into
        this machine's cache, keyed and checked by the sha256 the job recorded."""
        if job_id is None:
            return None
        with self._sessions() as session:
            record = job_queries.artifact_record(session=session, job_id=job_id, kind=kind)
        if record is None:
            return None
        location, digest = record
        if store.is_url(location):
            cache = store.cache(self.settings.home)
            hits = cache.hits
            path = cache.artifact(location, digest)
            how = "cache hit" if cache.hits > hits else "downloaded"
            self.log.info("artifact %s of job %s: %s, %s", kind, job_id, how, path)
            return str(path)
        return location

    def metrics_of(self, job_id: int) -> dict[str, float]:
        """Another job's metrics (name -> latest value)."""
        with self._sessions() as session:
            job = session.get(Job, job_id)
            return job_queries.latest_metrics(job) if job is not None else {}

    def heartbeat(self) -> None:
        try:
            self.write()
            with self._sessions() as session:
                if job_queries.preemption_requested(session=session, job_id=self.job_id):
                    self._preempted.set()
        except AttemptSuperseded:
            log.warning("job %s attempt %s superseded; stopping", self.job_id, self.attempt)
        except DBAPIError as error:  # the database is away: keep trying while the lease may still hold
            log.warning("job %s heartbeat failed: %s", self.job_id, str(error).splitlines()[0])
            if time.monotonic() - self._last_heartbeat > self.settings.lease_seconds:
                log.warning(
                    "job %s: no heartbeat for longer than the lease; another attempt may own the job, stopping",
                    self.job_id,
                )
                self._superseded.set()
            return
        self._last_heartbeat = time.monotonic()


class QuietContext(DbContext):
    """The context of a data-parallel rank other than 0: it trains, and reports nothing (rank 0 does)."""

    def write(self, action: Callable[[Session], None] | None = None) -> None:
        pass

    def artifact(self, kind: str, path: Path) -> None:
        pass

    def publish_log(self) -> None:
        pass


LOG_PUBLISH_SECONDS = 15.0
"""With an artifact store: how often a running job's log is copied there."""


def job_folder(settings: Settings, job_id: int) -> Path:
    return settings.artifacts / "jobs" / str(job_id)


size_and_digest = store.size_and_digest


def load_job_function(kind: str) -> Callable[[dict[str, Any], JobContext], dict[str, Any] | None]:
    module_name, _, function = job_kind(kind).run.partition(":")
    return getattr(importlib.import_module(module_name), function)


class _Heartbeat(threading.Thread):
    def __init__(self, ctx: DbContext):
        super().__init__(name=f"heartbeat-{ctx.job_id}", daemon=True)
        self.ctx = ctx
        self.done = threading.Event()

    def run(self) -> None:
        adopt(self.ctx.job_id)  # its warnings belong in the job's log
        published = time.monotonic()
        while not self.done.wait(self.ctx.settings.heartbeat_seconds):
            self.ctx.heartbeat()
            if self.ctx.settings.artifact_store and time.monotonic() - published > LOG_PUBLISH_SECONDS:
                published = time.monotonic()
                _publish_log(self.ctx)  # `bertq logs --follow` on another machine sees it grow
            if self.ctx.should_stop:
                return


def run_job(job_id: int, *, hostname: str, settings: Settings | None = None) -> str:
    """Claim and run one job; return what happened (for logs and tests)."""
    settings = settings or load_settings()
    factory = sessions(settings)
    worker = f"{hostname}/pid{os.getpid()}"
    with factory() as session, session.begin():
        claim = job_queries.claim(session=session, job_id=job_id, worker=worker, lease_seconds=settings.lease_seconds)
    if claim is None:
        log.info("job %s: not claimable (already running, finished or cancelled); skipping this delivery", job_id)
        return "skipped"

    faults.kill_on_claim(job_id)
    try:  # the CLI checked these; a forged or edited spec skipped it, so check again before any file is touched
        safety.check_spec(claim.spec, settings)
        safety.check_job_folder(job_folder(settings, job_id), settings)
    except Exception as error:  # noqa: BLE001 - whatever is wrong with the spec, the job is refused, not retried
        log.error("job %s refused: %s", job_id, error)
        _fail(factory, job_id, claim.attempt, error=f"refused: {error}")
        return "refused"
    loading.set_policy(claim.spec)
    ctx = DbContext(settings=settings, job_id=job_id, attempt=claim.attempt, kind=claim.kind, spec=claim.spec)
    try:
        with job_log(ctx.workdir / "job.log", job_id):
            return _run_claimed(ctx, factory, worker)
    finally:
        _publish_log(ctx)
        release_memory()


def describe_outcome(job_id: int, outcome: str, settings: Settings | None = None) -> dict[str, Any]:
    """What a Celery task reports about the job it ran (Flower shows it): id, kind, model, status,
    attempt, what this delivery did, and the error of a failed job."""
    from bertq.jobkinds import model_of

    summary: dict[str, Any] = {"job": job_id, "outcome": outcome}
    try:
        with sessions(settings or load_settings())() as session:
            job = session.get(Job, job_id)
            if job is not None:
                summary.update(
                    kind=job.kind,
                    model=model_of(job.kind, job.spec),
                    status=job.status,
                    attempt=job.attempts,
                    error=job.error,
                )
    except DBAPIError:  # the database is away: the task still reports what it knows
        pass
    return summary


def _publish_log(ctx: DbContext) -> None:
    try:
        ctx.publish_log()
    except Exception as error:  # noqa: BLE001 - the job's outcome is recorded already; the log copy is a courtesy
        log.warning("job %s: could not copy its log to the artifact store: %s", ctx.job_id, error)


def _run_claimed(ctx: DbContext, factory: Any, worker: str) -> str:
    """Run the job function of a claimed job with a heartbeat, and record how it ended."""
    job_id = ctx.job_id
    heartbeat = _Heartbeat(ctx)
    heartbeat.start()
    log.info("job %s (%s): attempt %s started on %s", job_id, ctx.kind, ctx.attempt, worker)
    try:
        processes = int(ctx.spec.get("gpus") or 1) if job_kind(ctx.kind).data_parallel else 1
        if processes > 1:
            result: dict[str, Any] | None = data_parallel.run_ranks(ctx, processes)
        else:
            result = load_job_function(ctx.kind)(ctx.spec, ctx)
        heartbeat.done.set()
        return _succeed(ctx, factory, result or {})
    except Preempted as error:
        heartbeat.done.set()
        log.warning("job %s: %s", job_id, error)
        return _requeue_preempted(ctx, factory)
    except AttemptSuperseded as error:
        log.warning("job %s: %s", job_id, error)
        with contextlib.suppress(DBAPIError), factory() as session, session.begin():
            job_queries.end_attempt(session=session, job_id=job_id, attempt=ctx.attempt, outcome="SUPERSEDED")
        return "superseded"
    except Exception as error:  # noqa: BLE001 - a failed job becomes data; the worker goes on
        heartbeat.done.set()
        reason = passing_fault(error)
        if reason is not None:
            return _retry_later(ctx, factory, reason)
        message = str(error) if isinstance(error, BertqError) else f"{type(error).__name__}: {error}"
        log.error("job %s failed: %s", job_id, message, exc_info=True)
        return _fail(factory, job_id, ctx.attempt, error=message, trace=traceback.format_exc())
    finally:
        heartbeat.done.set()


def passing_fault(error: BaseException) -> str | None:
    """Why the attempt stopped, when it was a fault that may pass (the job should be tried again):
    the database unreachable or locked, a full disk, or the object store down. None for any other error."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, DBAPIError) and (
            seen.connection_invalidated or isinstance(seen, (OperationalError, InterfaceError))
        ):
            detail = str(seen.orig).strip().splitlines()[0] if seen.orig else type(seen).__name__
            return f"the database was unavailable ({detail}); the attempt stopped without writing its results"
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" writing {seen.filename}" if seen.filename else ""
            return f"disk full: {seen.strerror or 'No space left on device'}{where}; free space there"
        if "No space left on device" in str(seen) or "StorageFull" in str(seen):  # e.g. safetensors' own error
            return f"disk full: {str(seen).splitlines()[0]}; free space where the job writes"
        if isinstance(seen, store.StoreTransient):
            return f"the object store was unavailable ({seen}); the attempt stopped and will be retried"
        if isinstance(seen, data_parallel.RankDied):
            return f"{seen}; the job resumes from its last complete checkpoint"
        seen = seen.__cause__ or seen.__context__
    return None


def _retry_later(ctx: DbContext, factory: Any, reason: str) -> str:
    """Back to the queue after the retry delay (or FAILED once out of attempts). If the database is
    still away this cannot be recorded: the lease then runs out and `bertq beat` requeues the job."""
    log.warning("job %s attempt %s stopped: %s", ctx.job_id, ctx.attempt, reason)
    try:
        with factory() as session, session.begin():
            requeued = job_queries.retry_later(session=session, job_id=ctx.job_id, attempt=ctx.attempt, reason=reason)
            if not requeued:
                return "failed"
            again = _delivery(session, ctx.job_id)
    except AttemptSuperseded:
        return "superseded"
    except DBAPIError as error:
        log.warning(
            "job %s: could not record the stop (%s); its lease will run out and it will be requeued", ctx.job_id, error
        )
        return "interrupted"
    dispatch([again], settings=ctx.settings, countdown=ctx.settings.retry_delay_seconds)
    log.info("job %s goes back to the queue in %gs", ctx.job_id, ctx.settings.retry_delay_seconds)
    return "retrying"


def _succeed(ctx: DbContext, factory: Any, result: dict[str, Any]) -> str:
    with factory() as session, session.begin():
        job_queries.finish(
            session=session, job_id=ctx.job_id, attempt=ctx.attempt, status=JobStatus.SUCCEEDED, result=result
        )
        released = [
            Delivery(j.id, j.kind, j.queue, j.priority)
            for j in job_queries.release_dependants(session=session, job_id=ctx.job_id)
        ]
    if released:
        dispatch(released, settings=ctx.settings)
    log.info("job %s succeeded", ctx.job_id)
    return "succeeded"


def _requeue_preempted(ctx: DbContext, factory: Any) -> str:
    with factory() as session, session.begin():
        if not job_queries.requeue_preempted(session=session, job_id=ctx.job_id, attempt=ctx.attempt):
            return "superseded"
        again = _delivery(session, ctx.job_id)
    dispatch([again], settings=ctx.settings)
    log.info("job %s checkpointed and went back to the queue", ctx.job_id)
    return "preempted"


def _delivery(session: Session, job_id: int) -> Delivery:
    """What sends a job back to its queue (read while the session is open)."""
    job = session.get(Job, job_id)
    assert job is not None
    return Delivery(job.id, job.kind, job.queue, job.priority)


def _fail(factory: Any, job_id: int, attempt: int, *, error: str, trace: str | None = None) -> str:
    """The attempt's job FAILED with `error` (the jobs waiting on it end with it: `finish`)."""
    try:
        with factory() as session, session.begin():
            job_queries.finish(
                session=session, job_id=job_id, attempt=attempt, status=JobStatus.FAILED, error=error, traceback=trace
            )
    except AttemptSuperseded:
        return "superseded"
    return "failed"
