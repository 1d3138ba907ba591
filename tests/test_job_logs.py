"""Each job's log holds its own lines, even when two jobs run at once in one worker process."""

from __future__ import annotations

import logging
import threading
import time

from bertq.db import jobs as q
from bertq.db.models import Job
from bertq.worker import runner


def test_two_jobs_running_at_once_in_one_process_keep_their_own_logs(bertq, monkeypatch):
    factory = bertq.sessions()
    with factory() as s, s.begin():
        ids = [
            q.create_job(session=s, kind="evaluate", spec={}, queue="cpu", priority=5, max_attempts=1).id
            for _ in range(2)
        ]
    both_running = threading.Barrier(2)

    def job_function(spec_values, ctx):  # what any job does: log through its own and the shared loggers
        both_running.wait(timeout=30)
        for line in range(5):
            ctx.log.info("job-%s says %s", ctx.job_id, line)
            logging.getLogger("bertq.worker.training").info("job-%s trains %s", ctx.job_id, line)
            time.sleep(0.01)
        return {}

    monkeypatch.setattr(runner, "load_job_function", lambda kind: job_function)
    outcomes: dict[int, str] = {}
    threads = [
        threading.Thread(
            target=lambda i=i: outcomes.__setitem__(i, runner.run_job(i, hostname="h", settings=bertq.settings()))
        )
        for i in ids
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes == {ids[0]: "succeeded", ids[1]: "succeeded"}
    for mine, other in (ids, ids[::-1]):
        text = (bertq.settings().artifacts / "jobs" / str(mine) / "job.log").read_text()
        assert text.count(f"job-{mine} says") == 5 and text.count(f"job-{mine} trains") == 5
        assert f"job-{other} " not in text, f"job {mine}'s log holds job {other}'s lines"
    with factory() as s:
        assert {s.get(Job, i).status for i in ids} == {"SUCCEEDED"}
