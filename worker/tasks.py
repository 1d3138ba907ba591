"""Celery tasks: thin wrappers that hand a job id to the runner, one readable name per job kind."""

from __future__ import annotations

from celery import shared_task

from bertq.jobkinds import JOB_KINDS
from bertq.worker.app import task_name


def _make_task(kind: str):  # type: ignore[no-untyped-def]
    @shared_task(name=task_name(kind), bind=True)
    def run(self, job_id: int) -> None:  # type: ignore[no-untyped-def]
        from bertq.worker.runner import run_job

        run_job(int(job_id), hostname=self.request.hostname or "worker")

    return run


TASKS = {kind: _make_task(kind) for kind in JOB_KINDS}
