"""Celery tasks: thin wrappers that hand a job id to the runner, one readable name per job kind.

What Flower shows is the job's truth: a job that FAILED (or was refused) ends its task as FAILURE
with the job's error; otherwise the task's result names the job, its kind and model, and what this
delivery did (`succeeded`, `retrying`, `skipped` for a duplicate delivery of a job that another
delivery runs or ran, `superseded`, ...), so retries and duplicates are told apart.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from bertq.jobkinds import JOB_KINDS
from bertq.worker.app import task_name


class JobFailed(Exception):
    """The job this task ran FAILED; the message is the job's recorded error."""


def _make_task(kind: str):  # type: ignore[no-untyped-def]
    @shared_task(name=task_name(kind), bind=True)
    def run(self, job_id: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        from bertq.worker.runner import describe_outcome, run_job

        outcome = run_job(int(job_id), hostname=self.request.hostname or "worker")
        summary = describe_outcome(int(job_id), outcome)
        if outcome in ("failed", "refused"):
            raise JobFailed(f"job {job_id} ({kind}, {summary.get('model') or '-'}) {outcome}: {summary.get('error')}")
        return summary

    return run


TASKS = {kind: _make_task(kind) for kind in JOB_KINDS}
