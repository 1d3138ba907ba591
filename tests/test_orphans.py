"""No job is left WAITING on a job that can no longer succeed, whichever path ended that job.

Every path to FAILED or CANCELLED is exercised on a small pipeline shaped like a distil run:
a pipeline row (waits for the last step), step A, step B after A, step C after B. When A ends
without succeeding, B and C are not run (CANCELLED, naming A) and the pipeline row is FAILED
naming A; `orphans` (what `bertq jobs` warns about) finds nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from bertq.db import jobs as q
from bertq.db.models import Job, JobDependency, JobStatus


@dataclass
class Pipeline:
    parent: int
    a: int
    b: int
    c: int


def _pipeline(factory, max_attempts: int = 2) -> Pipeline:  # type: ignore[no-untyped-def]
    with factory() as s, s.begin():

        def new(kind: str, after: tuple[int, ...] = (), waiting: bool = False) -> int:
            return q.create_job(
                session=s,
                kind=kind,
                spec={},
                queue="cpu",
                priority=5,
                max_attempts=max_attempts,
                depends_on=after,
                waiting=waiting,
            ).id

        parent = new("distill", waiting=True)
        a = new("finetune")
        b = new("teacher_outputs", (a,))
        c = new("student", (b,))
        s.add(JobDependency(job_id=parent, depends_on_id=c))
        for step in (a, b, c):
            s.get(Job, step).parent_id = parent
    return Pipeline(parent, a, b, c)


def _expire(factory, job_id: int) -> None:  # type: ignore[no-untyped-def]
    with factory() as s, s.begin():
        s.get(Job, job_id).lease_expires_at = q.utcnow().replace(year=2000)


def _claim_and_lose(factory, job_id: int) -> None:  # type: ignore[no-untyped-def]
    with factory() as s, s.begin():
        assert q.claim(session=s, job_id=job_id, worker="w", lease_seconds=-1) is not None  # lease born expired


def _lost_on_every_attempt_then_claimed(factory, p: Pipeline) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2):
        _claim_and_lose(factory, p.a)
    with factory() as s, s.begin():  # a redelivered message finds the job out of attempts
        assert q.claim(session=s, job_id=p.a, worker="w", lease_seconds=60) is None


def _lost_on_every_attempt_then_reaped(factory, p: Pipeline) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2):
        _claim_and_lose(factory, p.a)
    with factory() as s, s.begin():  # the reaper (beat, or any worker's) finds the expired lease
        assert p.a in q.expired_leases(session=s)
        assert q.requeue_lost(session=s, job_id=p.a) is False


def _the_job_function_raised(factory, p: Pipeline) -> None:  # type: ignore[no-untyped-def]
    with factory() as s, s.begin():
        claim = q.claim(session=s, job_id=p.a, worker="w", lease_seconds=60)
    with factory() as s, s.begin():
        q.finish(session=s, job_id=p.a, attempt=claim.attempt, status=JobStatus.FAILED, error="ValueError: boom")


def _a_passing_fault_on_the_last_attempt(factory, p: Pipeline) -> None:  # type: ignore[no-untyped-def]
    _claim_and_lose(factory, p.a)
    _expire(factory, p.a)
    with factory() as s, s.begin():
        claim = q.claim(session=s, job_id=p.a, worker="w", lease_seconds=60)
    with factory() as s, s.begin():
        assert q.retry_later(session=s, job_id=p.a, attempt=claim.attempt, reason="disk full") is False


def _cancelled(factory, p: Pipeline) -> None:  # type: ignore[no-untyped-def]
    with factory() as s, s.begin():
        assert q.cancel(session=s, job_id=p.a) is not None


PATHS = {
    "claim out of attempts": (_lost_on_every_attempt_then_claimed, JobStatus.FAILED, "lost on each of its 2 attempts"),
    "reaper out of attempts": (_lost_on_every_attempt_then_reaped, JobStatus.FAILED, "lost on each of its 2 attempts"),
    "runner failure": (_the_job_function_raised, JobStatus.FAILED, "ValueError: boom"),
    "retry out of attempts": (_a_passing_fault_on_the_last_attempt, JobStatus.FAILED, "disk full"),
    "cancel": (_cancelled, JobStatus.CANCELLED, "was cancelled"),
}


@pytest.mark.parametrize("path", list(PATHS))
def test_every_path_to_failed_or_cancelled_ends_the_dependants(bertq_any_db, path):
    end, status, words = PATHS[path]
    factory = bertq_any_db.sessions()
    p = _pipeline(factory)
    end(factory, p)
    with factory() as s:
        jobs = {job_id: s.get(Job, job_id) for job_id in (p.parent, p.a, p.b, p.c)}
        assert jobs[p.a].status == status
        for step in (p.b, p.c):
            assert jobs[step].status == JobStatus.CANCELLED, path
            assert jobs[step].error.startswith("not run: ") and f"job {p.a}" in jobs[step].error.replace("step", "job")
        assert jobs[p.parent].status == JobStatus.FAILED
        assert f"{p.a} (finetune)" in jobs[p.parent].error and words in jobs[p.parent].error
        assert all(a.ended_at is not None for a in jobs[p.a].attempt_rows)
        assert q.orphans(session=s) == []


def test_a_job_submitted_after_its_dependency_failed_is_not_left_waiting(bertq_any_db):
    factory = bertq_any_db.sessions()
    p = _pipeline(factory)
    _the_job_function_raised(factory, p)
    with factory() as s, s.begin():
        late = q.create_job(
            session=s, kind="evaluate", spec={}, queue="cpu", priority=5, max_attempts=2, depends_on=(p.a,)
        ).id
        s.flush()
        assert q.orphans(session=s) == [(late, p.a, "FAILED")]  # what the check reports before the rule runs
        assert q.release_ready(session=s, job_ids=[late]) == []
    with factory() as s:
        job = s.get(Job, late)
        assert job.status == JobStatus.CANCELLED and f"job {p.a}" in job.error
        assert q.orphans(session=s) == []


def test_bertq_jobs_warns_of_jobs_waiting_on_a_job_that_ended(bertq):
    factory = bertq.sessions()
    p = _pipeline(factory)
    with factory() as s, s.begin():  # a row edited by hand: the path that bypasses end_unsuccessfully
        s.get(Job, p.a).status = JobStatus.FAILED
    listing = bertq.run("jobs", check=True)
    assert f"job {p.b} waits for job {p.a}, which FAILED" in listing.stderr
    assert json.loads(bertq.run("jobs", "--orphans", "--json", check=True).stdout) == [
        {"id": p.b, "waits_for": p.a, "which": "FAILED"}
    ]
