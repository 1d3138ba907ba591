"""The tables: jobs and their attempts, dependencies, metrics and artifacts."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, MetaData, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Naive UTC: stored the same way by SQLite and PostgreSQL."""
    return datetime.now(UTC).replace(tzinfo=None)


class JobStatus(StrEnum):
    WAITING = "WAITING"
    """Created, but waits for the jobs it depends on (a pipeline step)."""
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {dict[str, Any]: JSON}


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The resolved specification: every default filled in, every path absolute."""
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED, index=True)
    queue: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=5)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Attempts started so far; the current attempt's number is the fencing token for writes."""
    max_attempts: Mapped[int] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    preempt_requested: Mapped[bool] = mapped_column(default=False, server_default=false())
    """Set when the worker running the job is shutting down: checkpoint, then go back to the queue."""
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """step, total, loss, eta_seconds ... as the job reports them."""
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """A job's own summary (a pipeline's retention and speed-up, for example)."""
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    metrics: Mapped[list[Metric]] = relationship(back_populates="job", order_by="Metric.id")
    artifacts: Mapped[list[Artifact]] = relationship(back_populates="job", order_by="Artifact.id")
    attempt_rows: Mapped[list[Attempt]] = relationship(back_populates="job", order_by="Attempt.number")
    children: Mapped[list[Job]] = relationship(order_by="Job.id")
    """The steps of a pipeline, or the evaluation a fine-tune enqueued for itself."""


class JobDependency(Base):
    """`job_id` may start only once `depends_on_id` has SUCCEEDED."""

    __tablename__ = "job_dependencies"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    depends_on_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True, index=True)


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (Index("ix_attempts_job_number", "job_id", "number", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    number: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column()
    outcome: Mapped[str | None] = mapped_column(String(32))
    """SUCCEEDED, FAILED, CANCELLED, LOST (lease expired), SUPERSEDED, or null while running."""
    resumed_from: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="attempt_rows")


class Metric(Base):
    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(128))
    value: Mapped[float] = mapped_column(Float)
    split: Mapped[str | None] = mapped_column(String(32))
    step: Mapped[int | None] = mapped_column(Integer)
    epoch: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="metrics")


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    """checkpoint, log, spec, teacher_logits, output ..."""
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="artifacts")


class ShardRow(Base):
    """One shard of a bulk-inference job: a line-aligned byte range (or row range) of one input file,
    run by its own job (`shard_job_id`) on any worker of the queue."""

    __tablename__ = "shards"
    __table_args__ = (Index("ix_shards_job_index", "job_id", "index", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    index: Mapped[int] = mapped_column(Integer)
    shard_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    path: Mapped[str] = mapped_column(Text)
    start: Mapped[int] = mapped_column(BigInteger)
    end: Mapped[int] = mapped_column(BigInteger)
    first_line: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    file_size: Mapped[int] = mapped_column(BigInteger)
    rows_done: Mapped[int] = mapped_column(BigInteger, default=0)
    output_path: Mapped[str | None] = mapped_column(Text)
    """The committed attempt's record file; set only by the attempt that was current when it finished."""
    output_sha256: Mapped[str | None] = mapped_column(String(64))


class Schedule(Base):
    """A cron schedule that submits a job (the argv of a `bertq submit ...` command) at each slot."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    cron: Mapped[str] = mapped_column(String(128))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    argv: Mapped[dict[str, Any]] = mapped_column(JSON)
    """{"args": [...]} after `bertq`, e.g. ["submit", "infer", ...]."""
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScheduleFire(Base):
    """One slot of one schedule, fired once: the unique (schedule, slot) pair is what makes two beat
    processes running by mistake fire a slot once between them."""

    __tablename__ = "schedule_fires"
    __table_args__ = (Index("ix_schedule_fires_slot", "schedule_id", "slot", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    slot: Mapped[datetime] = mapped_column()
    """The slot's time in UTC (naive)."""
    fired_at: Mapped[datetime] = mapped_column(default=utcnow)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    error: Mapped[str | None] = mapped_column(Text)


class WorkerRow(Base):
    """A worker process as it registered itself: what it serves and on what, and when it was last seen."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    """Celery's node name (`bertq-cpu-1234@host`)."""
    host: Mapped[str] = mapped_column(String(255))
    queues: Mapped[str] = mapped_column(String(255))
    """The queues it consumes, comma-separated."""
    device: Mapped[str] = mapped_column(String(16))
    """cuda when it sees a GPU, else cpu: what its jobs with device `auto` run on."""
    gpu_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    gpu_memory_mb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    concurrency: Mapped[int] = mapped_column(Integer, default=1)
    bertq_version: Mapped[str] = mapped_column(String(32))
    torch_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    stopped_at: Mapped[datetime | None] = mapped_column(nullable=True)
