"""The database, not the broker, decides who runs a job: a second delivery does nothing."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from bertq.db import jobs as q
from bertq.db.models import Attempt, Job, JobStatus, Metric
from bertq.errors import AttemptSuperseded


def _new_job(session) -> int:
    job = q.create_job(session=session, kind="finetune", spec={"model": "x"}, queue="cpu", priority=5, max_attempts=2)
    return job.id


def test_claim_is_exclusive_and_stale_attempts_are_fenced(bertq_any_db):
    factory = bertq_any_db.sessions()
    with factory() as s, s.begin():
        job_id = _new_job(s)
    with factory() as s, s.begin():
        first = q.claim(session=s, job_id=job_id, worker="a", lease_seconds=60)
    with factory() as s, s.begin():
        assert q.claim(session=s, job_id=job_id, worker="b", lease_seconds=60) is None  # lease still held
    assert first is not None and first.attempt == 1

    # The lease expires (the worker died): another worker takes over as attempt 2.
    with factory() as s, s.begin():
        s.get(Job, job_id).lease_expires_at = q.utcnow().replace(year=2000)
    with factory() as s, s.begin():
        second = q.claim(session=s, job_id=job_id, worker="b", lease_seconds=60)
    assert second is not None and second.attempt == 2

    # The first attempt comes back: every write it tries is refused.
    with factory() as s, pytest.raises(AttemptSuperseded), s.begin():
        q.fence(session=s, job_id=job_id, attempt=1, lease_seconds=60)
    with factory() as s, pytest.raises(AttemptSuperseded), s.begin():
        q.finish(session=s, job_id=job_id, attempt=1, status=JobStatus.SUCCEEDED)
    with factory() as s, s.begin():
        q.finish(session=s, job_id=job_id, attempt=2, status=JobStatus.SUCCEEDED)
    with factory() as s:
        job = s.get(Job, job_id)
        outcomes = [(a.number, a.outcome) for a in job.attempt_rows]
    assert job.status == "SUCCEEDED"
    assert outcomes == [(1, "LOST"), (2, "SUCCEEDED")]


def test_a_job_that_loses_its_worker_every_time_fails_after_its_attempt_limit(bertq_any_db):
    bertq = bertq_any_db
    factory = bertq.sessions()
    with factory() as s, s.begin():
        job_id = _new_job(s)
    for _ in range(2):
        with factory() as s, s.begin():
            assert q.claim(session=s, job_id=job_id, worker="w", lease_seconds=-1) is not None  # lease born expired
    with factory() as s, s.begin():
        assert q.claim(session=s, job_id=job_id, worker="w", lease_seconds=60) is None
    with factory() as s:
        job = s.get(Job, job_id)
        assert job.status == "FAILED" and "lost on each of its 2 attempts" in job.error


@pytest.mark.slow
def test_the_same_message_delivered_twice_runs_the_job_once(bertq_any_db, tiny_model, tiny_data):
    bertq = bertq_any_db
    train, dev = tiny_data
    bertq.start_worker("--concurrency", "2")
    job_id = json.loads(
        bertq.run(
            "submit",
            "finetune",
            "--model",
            str(tiny_model),
            "--task",
            "sst2",
            "--train",
            str(train),
            "--eval",
            str(dev),
            "--epochs",
            "1",
            "--max-length",
            "32",
            "--json",
            check=True,
        ).stdout
    )["id"]
    # A manual resend of the same job id (as a broker redelivery would do), while it runs and after.
    from bertq.worker.app import make_app, send_job

    app = make_app(bertq.settings())
    send_job(app, job_id=job_id, kind="finetune", queue="cpu", priority=5)
    assert bertq.run("wait", str(job_id), "--timeout", "300").returncode == 0
    send_job(app, job_id=job_id, kind="finetune", queue="cpu", priority=5)
    time.sleep(3)  # give the worker the chance to (wrongly) run it again

    with bertq.sessions()() as s:
        job = s.get(Job, job_id)
        attempts = s.scalar(select(func.count()).select_from(Attempt).where(Attempt.job_id == job_id))
        final_evals = s.scalar(
            select(func.count()).select_from(Metric).where(Metric.job_id == job_id, Metric.name == "eval_accuracy")
        )
    assert job.status == "SUCCEEDED" and job.attempts == 1 and attempts == 1
    assert final_evals == 2  # one per epoch (1) + the best model's final evaluation: written once
    skipped = sum(p.log_path.read_text().count("not claimable") for p in bertq.workers)
    assert skipped == 2


def test_a_retried_planning_step_adds_the_shards_once_and_the_bulk_job_waits_for_them(bertq_any_db, tmp_path):
    """The planning step commits shard jobs, shard rows and the bulk job's dependencies in one fenced
    transaction; an attempt that finds them there (its predecessor died after committing) adds none."""
    from bertq.bulk import InferSpec, plan_infer
    from bertq.config import load_settings
    from bertq.db import shards as shard_queries
    from bertq.db.models import JobDependency, ShardRow
    from bertq.db.submit import record_plan
    from bertq.sharding import Shard

    settings = load_settings(env=bertq_any_db.env)
    factory = bertq_any_db.sessions()
    spec = InferSpec(
        model="m", model_location=None, model_job_id=None, task="classify", inputs=[], output=str(tmp_path / "out")
    )
    with factory() as s, s.begin():
        (bulk_id, plan_id), ready = record_plan(
            session=s, plan=plan_infer(spec, queue="cpu", priority=5), settings=settings
        )
    assert [d.id for d in ready] == [plan_id]  # the bulk job waits for its planning step
    shards = [Shard(i, str(tmp_path / "in.txt"), i * 10, i * 10 + 10, i + 1, 1, "0" * 64, 20) for i in range(2)]
    for attempt in (1, 2):  # attempt 1 commits its plan, then its worker dies (its lease runs out)
        with factory() as s, s.begin():
            assert q.claim(session=s, job_id=plan_id, worker=f"w{attempt}", lease_seconds=60).attempt == attempt
        with factory() as s, s.begin():
            q.fence(session=s, job_id=plan_id, attempt=attempt, lease_seconds=60)
            added = shard_queries.add_shards(session=s, parent=bulk_id, shards=shards, settings=settings)
        assert len(added) == 2  # the first attempt's shard jobs, sent again: a duplicate delivery is harmless
        with factory() as s, s.begin():
            s.get(Job, plan_id).lease_expires_at = q.utcnow().replace(year=2000)
    with factory() as s, s.begin():
        q.finish(session=s, job_id=plan_id, attempt=2, status=JobStatus.SUCCEEDED)
        assert q.release_dependants(session=s, job_id=plan_id) == []  # the shards are not done yet
    with factory() as s:
        shard_jobs = s.scalars(select(Job.id).where(Job.kind == "infer_shard")).all()
        assert len(shard_jobs) == 2 and s.scalar(select(func.count()).select_from(ShardRow)) == 2
        assert s.scalar(select(func.count()).where(JobDependency.job_id == bulk_id)) == 3
        bulk = s.get(Job, bulk_id)
        assert bulk.status == "WAITING" and bulk.spec["shards"] == 2 and bulk.spec["records"] == 2
    for job_id in shard_jobs:
        with factory() as s, s.begin():
            claimed = q.claim(session=s, job_id=job_id, worker="w", lease_seconds=60)
            q.finish(session=s, job_id=job_id, attempt=claimed.attempt, status=JobStatus.SUCCEEDED)
            released = [j.id for j in q.release_dependants(session=s, job_id=job_id)]
    assert released == [bulk_id]
