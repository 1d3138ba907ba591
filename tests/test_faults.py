"""Faults injected into real processes: killed, frozen and duplicated workers, poisoned messages.
Leases, heartbeats and the visibility timeout are set short (see conftest), so nothing here waits
for Celery's or bertq's production timeouts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import POSTGRES_ONLY
from helpers import beat as _beat
from helpers import stop as _stop
from helpers import wait_for as _wait_for

pytestmark = pytest.mark.slow


def _submit_finetune(bertq, tiny_model, tiny_data, *extra: str) -> int:
    train, dev = tiny_data
    return json.loads(
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
            "--max-length",
            "32",
            "--batch-size",
            "8",
            "--no-evaluate",
            "--json",
            *extra,
            check=True,
        ).stdout
    )["id"]


SLOW_STEPS = {"BERTQ_FAULT_STEP_SECONDS": "0.05"}
"""A tiny model trains ~100 steps a second: at 20 steps an epoch, with at least 1 s an epoch the
fault a test injects after epoch 1 lands while the job still trains, however fast the machine."""


def _checkpoints(bertq, job_id: int) -> list[Path]:
    return sorted((bertq.home / "artifacts" / "jobs" / str(job_id) / "attempts").glob("*/checkpoint-*/BERTQ_COMPLETE"))


def _worker_child_pid(bertq, job_id: int) -> int:
    view = bertq.json("show", str(job_id))
    return int(view["lease_owner"].rsplit("/pid", 1)[1])


def test_a_worker_killed_mid_finetune_resumes_from_its_last_complete_checkpoint(bertq, tiny_model, tiny_data):
    """SQLite only: resuming from a checkpoint is the worker's; the database's part (lease, requeue,
    fencing) runs on both databases in test_infer.py and test_duplicate_delivery.py."""
    bertq.env.update(SLOW_STEPS)
    first = bertq.start_worker(name="first@%h")
    beat = _beat(bertq)
    try:
        job = _submit_finetune(bertq, tiny_model, tiny_data, "--epochs", "4")
        _wait_for(lambda: _checkpoints(bertq, job))  # epoch 1 saved completely
        os.killpg(first.pid, signal.SIGKILL)
        bertq.start_worker(name="second@%h")
        assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0
    finally:
        _stop(beat)
    view = bertq.json("show", str(job))
    history = view["attempt_history"]
    assert [a["outcome"] for a in history] == ["LOST", "SUCCEEDED"]
    assert history[0]["resumed_from"] is None
    assert history[1]["resumed_from"] and "/attempts/1/checkpoint-" in history[1]["resumed_from"]

    from sqlalchemy import select

    from bertq.db.models import Metric

    with bertq.sessions()() as session:
        epochs = session.scalars(
            select(Metric.epoch).where(Metric.job_id == job, Metric.name == "eval_accuracy", Metric.epoch.is_not(None))
        ).all()
        loss_steps = session.scalars(select(Metric.step).where(Metric.job_id == job, Metric.name == "train_loss")).all()
    assert sorted(round(e) for e in epochs) == [1, 2, 3, 4]  # each epoch's evaluation once
    assert len(loss_steps) == len(set(loss_steps))  # no step logged twice


def test_a_job_that_kills_its_worker_every_time_fails_after_its_attempts_and_the_queue_goes_on(
    bertq_any_db, tiny_model, tiny_data
):
    bertq = bertq_any_db
    bertq.env["BERTQ_MAX_ATTEMPTS"] = "2"
    job = _submit_finetune(bertq, tiny_model, tiny_data, "--epochs", "1")
    bertq.env["BERTQ_FAULT_KILL_JOBS"] = str(job)
    bertq.start_worker()
    beat = _beat(bertq)
    try:
        assert bertq.run("wait", str(job), "--timeout", "180").returncode == 1
        view = bertq.json("show", str(job))
        assert (
            view["status"] == "FAILED" and view["attempts"] == 2 and "lost on each of its 2 attempts" in view["error"]
        )
        survivor = _submit_finetune(bertq, tiny_model, tiny_data, "--epochs", "1")
        assert bertq.run("wait", str(survivor), "--timeout", "180").returncode == 0
    finally:
        _stop(beat)


@POSTGRES_ONLY
def test_a_frozen_stale_attempt_cannot_write_once_another_took_over(bertq_any_db, tiny_model, tiny_data):
    bertq = bertq_any_db
    bertq.env.update(SLOW_STEPS)
    stale_worker = bertq.start_worker(name="stale@%h")
    beat = _beat(bertq)
    try:
        job = _submit_finetune(bertq, tiny_model, tiny_data, "--epochs", "6")
        _wait_for(lambda: _checkpoints(bertq, job))
        child = _worker_child_pid(bertq, job)
        os.kill(child, signal.SIGSTOP)  # frozen past its lease
        bertq.start_worker(name="fresh@%h")
        assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0
        taken_over = bertq.json("show", str(job))
        os.kill(child, signal.SIGCONT)  # the stale attempt wakes up after attempt 2 committed
        time.sleep(4)  # several of its heartbeats
    finally:
        _stop(beat)
    view = bertq.json("show", str(job))
    assert view["status"] == "SUCCEEDED" and view["attempts"] == 2
    assert view["metrics"] == taken_over["metrics"] and view["artifacts"] == taken_over["artifacts"]
    from datetime import datetime

    from sqlalchemy import func, select

    from bertq.db.models import Metric

    second_started = datetime.fromisoformat(view["attempt_history"][1]["started_at"].rstrip("Z"))
    with bertq.sessions()() as session:
        late_writes = session.scalar(
            select(func.count())
            .select_from(Metric)
            .where(Metric.job_id == job, Metric.attempt == 1, Metric.created_at > second_started)
        )
    assert late_writes == 0
    assert "superseded" in stale_worker.log_path.read_text()


@POSTGRES_ONLY
def test_a_job_longer_than_the_visibility_timeout_never_runs_twice_at_once(bertq_any_db, tiny_model, tiny_data):
    """Redis hands the unacknowledged message out again once the 2 s visibility timeout has passed;
    each copy finds the job claimed, so one attempt runs."""
    bertq = bertq_any_db
    bertq.env["BERTQ_VISIBILITY_TIMEOUT"] = "2"
    bertq.env["BERTQ_FAULT_STEP_SECONDS"] = "0.01"  # 600 steps: at least 6 s, past the timeout and a restore scan
    workers = [bertq.start_worker(name="a@%h"), bertq.start_worker(name="b@%h")]
    job = _submit_finetune(bertq, tiny_model, tiny_data, "--epochs", "30")
    assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0
    view = bertq.json("show", str(job))
    assert view["attempts"] == 1 and [a["outcome"] for a in view["attempt_history"]] == ["SUCCEEDED"]
    redelivered = sum(w.log_path.read_text().count(f"job {job}: not claimable") for w in workers)
    assert redelivered >= 1  # the message did come back while the job ran


@POSTGRES_ONLY
def test_a_pickled_message_is_refused_and_nothing_runs(bertq_any_db, tiny_model, tiny_data):
    bertq = bertq_any_db
    from bertq.db import jobs as q

    with bertq.sessions()() as session, session.begin():
        job = q.create_job(session=session, kind="finetune", spec={}, queue="cpu", priority=5, max_attempts=3).id
    worker = bertq.start_worker()
    from bertq.worker.app import make_app

    make_app(bertq.settings()).send_task("bertq.finetune", args=[job], queue="cpu", serializer="pickle")
    _wait_for(lambda: "pickle" in worker.log_path.read_text(), timeout=30)
    time.sleep(1)
    view = bertq.json("show", str(job))
    assert view["status"] == "QUEUED" and view["attempts"] == 0
    assert (
        "Refusing to deserialize" in worker.log_path.read_text() or "ContentDisallowed" in worker.log_path.read_text()
    )


@POSTGRES_ONLY
def test_messages_lost_by_redis_are_sent_again_by_reconcile_and_run_once(bertq_any_db, tiny_model, tiny_data):
    import redis

    from bertq.broker import broker_url

    bertq = bertq_any_db
    jobs = [_submit_finetune(bertq, tiny_model, tiny_data, "--epochs", "1") for _ in range(2)]
    client = redis.Redis.from_url(broker_url(bertq.settings()))
    assert "every queued job has its message" in bertq.run("reconcile", "--older-than", "0", check=True).stdout
    client.flushall()  # Redis loses its queued messages...
    resent = bertq.run("reconcile", "--older-than", "0", check=True).stdout  # ...`bertq reconcile` sends them again
    assert all(str(job) in resent for job in jobs)
    client.flushall()  # and again: this time `bertq beat` notices by itself
    beat = _beat(bertq, "--reconcile-every", "1", "--reconcile-older-than", "0")
    try:
        from bertq.scheduler.reaper import _ids_in_broker

        _wait_for(lambda: set(jobs) <= _ids_in_broker(bertq.settings()), timeout=60, every=0.5)
        bertq.start_worker()
        for job in jobs:
            assert bertq.run("wait", str(job), "--timeout", "180").returncode == 0
            assert bertq.json("show", str(job))["attempts"] == 1
    finally:
        _stop(beat)


def test_a_dead_consumers_delivery_does_not_hide_a_queued_job_from_reconcile(bertq, tiny_model, tiny_data):
    """A SIGKILLed worker's delivery stays in Redis's `unacked` hash for the visibility timeout (an
    hour): counted as present, its QUEUED job waited that hour (the soak found one). A delivery that
    old whose job is still QUEUED is now resent; a fresh one still counts."""
    import json
    import time

    import redis

    from bertq.broker import broker_url

    job = _submit_finetune(bertq, tiny_model, tiny_data, "--epochs", "1")
    client = redis.Redis.from_url(broker_url(bertq.settings()))
    [queue] = [key for key in client.scan_iter() if client.type(key) == b"list" and client.llen(key)]
    payload = client.rpop(queue)  # what a consumer receives, as kombu's Redis transport keeps it
    client.hset("unacked", "tag-1", json.dumps([json.loads(payload), "cpu", "cpu"]))
    client.zadd("unacked_index", {"tag-1": time.time()})
    live = bertq.run("reconcile", "--older-than", "0", check=True).stdout
    assert "every queued job has its message" in live  # a delivery a moment old: its consumer is at work
    client.zadd("unacked_index", {"tag-1": time.time() - 3600})  # delivered an hour ago, never claimed
    assert f"sent again: [{job}]" in bertq.run("reconcile", "--older-than", "0", check=True).stdout
    assert sum(client.llen(key) for key in client.scan_iter() if client.type(key) == b"list") == 1  # sent again


def test_redis_killed_with_clients_connected_comes_back_on_its_port(bertq):
    """Workers know the broker's port only: a restart that moved it (the killed server's connections
    sit in TIME_WAIT on that port) stranded every worker. The soak (bench/soak.sh) found this."""
    import redis

    from bertq.broker import broker_url, ensure_embedded_redis, kill_embedded_redis

    settings = bertq.settings()
    port = ensure_embedded_redis(settings)["port"]
    clients = [redis.Redis.from_url(broker_url(settings)) for _ in range(4)]
    for _ in range(3):
        assert all(client.ping() for client in clients)
        kill_embedded_redis(settings)
        assert ensure_embedded_redis(settings)["port"] == port  # at once, as a CLI call would
    assert all(client.ping() for client in clients)  # the same clients reconnect by themselves


@POSTGRES_ONLY
def test_redis_restarted_mid_job_the_job_finishes_once(bertq_any_db, tiny_model, tiny_data):
    bertq = bertq_any_db
    from bertq.broker import ensure_embedded_redis, kill_embedded_redis

    bertq.env.update(SLOW_STEPS)
    bertq.start_worker()
    job = _submit_finetune(bertq, tiny_model, tiny_data, "--epochs", "5")
    _wait_for(lambda: bertq.json("show", str(job))["status"] == "RUNNING")
    kill_embedded_redis(bertq.settings())  # the broker dies mid-job...
    time.sleep(2)
    ensure_embedded_redis(bertq.settings())  # ...and comes back (same port, password, append-only file)
    assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0
    view = bertq.json("show", str(job))
    assert view["status"] == "SUCCEEDED" and view["attempts"] == 1


def test_sigterm_to_a_worker_checkpoints_the_job_requeues_it_and_it_resumes(bertq, tiny_model, tiny_data):
    """SQLite only: resuming from a checkpoint is the worker's; the database's part (lease, requeue,
    fencing) runs on both databases in test_infer.py and test_duplicate_delivery.py."""
    bertq.env.update(SLOW_STEPS)
    first = bertq.start_worker(name="deploy-old@%h")
    job = _submit_finetune(bertq, tiny_model, tiny_data, "--epochs", "8")
    _wait_for(lambda: _checkpoints(bertq, job))
    os.kill(first.pid, signal.SIGTERM)  # a deploy: the worker is asked to stop
    first.wait(timeout=120)
    view = _wait_for(lambda: (v := bertq.json("show", str(job)))["status"] != "RUNNING" and v)
    assert view["status"] == "QUEUED", (view, first.log_path.read_text()[-4000:])
    assert [a["outcome"] for a in view["attempt_history"]] == ["PREEMPTED"]
    saved = int(view["progress_detail"]["step"])
    bertq.start_worker(name="deploy-new@%h")
    assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0
    view = bertq.json("show", str(job))
    assert [a["outcome"] for a in view["attempt_history"]] == ["PREEMPTED", "SUCCEEDED"]
    resumed = view["attempt_history"][1]["resumed_from"]
    assert resumed and "/attempts/1/checkpoint-" in resumed
    assert int(resumed.rsplit("-", 1)[1]) >= saved  # the step it had reached, saved at the shutdown


def test_a_checkpoint_save_cut_short_is_never_resumed_and_the_last_complete_one_survives(bertq, tiny_model, tiny_data):
    """SQLite only: this fault is the worker's (files, memory), not the database's."""
    job = _submit_finetune(bertq, tiny_model, tiny_data, "--epochs", "4")  # 20 steps an epoch, a save each
    bertq.env["BERTQ_FAULT_KILL_IN_SAVE"] = f"{job}:2"  # attempt 1 dies while saving epoch 2
    first = bertq.start_worker(name="first@%h")
    attempt_1 = bertq.home / "artifacts" / "jobs" / str(job) / "attempts" / "1"
    child = _wait_for(lambda: bertq.json("show", str(job)).get("lease_owner") and _worker_child_pid(bertq, job))
    _wait_for(
        lambda: not Path(f"/proc/{child}").exists() or Path(f"/proc/{child}/status").read_text().find("zombie") > 0,
        timeout=180,
    )
    os.killpg(first.pid, signal.SIGKILL)
    assert (attempt_1 / "checkpoint-20" / "BERTQ_COMPLETE").is_file()
    assert (attempt_1 / "checkpoint-40" / "model.safetensors").is_file()  # written...
    assert not (attempt_1 / "checkpoint-40" / "BERTQ_COMPLETE").exists()  # ...but never marked complete
    del bertq.env["BERTQ_FAULT_KILL_IN_SAVE"]
    beat = _beat(bertq)
    try:
        bertq.start_worker(name="second@%h")
        assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0
    finally:
        _stop(beat)
    history = bertq.json("show", str(job))["attempt_history"]
    assert [a["outcome"] for a in history] == ["LOST", "SUCCEEDED"]
    assert history[1]["resumed_from"] == str(attempt_1 / "checkpoint-20")


def test_out_of_memory_backs_off_in_training_and_inference_and_fails_clearly_at_batch_one(
    bertq, tiny_model, tiny_data, tmp_path
):
    """SQLite only: this fault is the worker's (files, memory), not the database's."""
    bertq.env["BERTQ_FAULT_OOM_ABOVE_BATCH"] = "4"  # CUDA's out-of-memory error for any batch over 4
    worker = bertq.start_worker()
    job = _submit_finetune(bertq, tiny_model, tiny_data, "--epochs", "1", "--batch-size", "16")
    assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0
    view = bertq.json("show", str(job))
    assert view["attempts"] == 1
    assert view["result"]["train_batch_size"] == 4 and view["result"]["gradient_accumulation_steps"] == 4
    assert view["progress_detail"]["total"] == 10  # 160 examples, 16 per optimiser step, as asked
    assert "out of memory with a batch of 16" in worker.log_path.read_text()

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"a fine film number {i}\n" for i in range(300)))
    infer = json.loads(
        bertq.run(
            "submit",
            "infer",
            "--model",
            str(job),
            "--task",
            "classify",
            "--input",
            str(corpus),
            "--output",
            str(tmp_path / "out"),
            "--shards",
            "1",
            "--json",
            check=True,
        ).stdout
    )["id"]
    assert bertq.run("wait", str(infer), "--timeout", "300").returncode == 0
    [part] = (tmp_path / "out").glob("part-*.jsonl")
    assert len(part.read_text().splitlines()) == 300

    bertq.stop_workers()
    bertq.env["BERTQ_FAULT_OOM_ABOVE_BATCH"] = "0"  # not even one input fits
    bertq.start_worker()
    hopeless = _submit_finetune(bertq, tiny_model, tiny_data, "--epochs", "1", "--batch-size", "4")
    assert bertq.run("wait", str(hopeless), "--timeout", "300").returncode == 1
    view = bertq.json("show", str(hopeless))
    assert view["status"] == "FAILED" and view["attempts"] == 1  # no retry loop
    assert "out of memory while training with a batch of 1" in view["error"] and "--max-length" in view["error"]


def test_the_database_away_mid_job_stops_the_attempt_and_the_job_completes_once_it_is_back(
    bertq_any_db, tiny_model, tiny_data, database_outage
):
    bertq = bertq_any_db
    bertq.env["BERTQ_DB_BUSY_SECONDS"] = "2"  # SQLite: a locked write fails after 2 s, not 30
    bertq.env.update(SLOW_STEPS)
    worker = bertq.start_worker()
    beat = _beat(bertq)
    try:
        job = _submit_finetune(bertq, tiny_model, tiny_data, "--epochs", "10")
        _wait_for(lambda: _checkpoints(bertq, job))
        database_outage(bertq, seconds=15)  # longer than the 6 s lease
        assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0
    finally:
        _stop(beat)
    view = bertq.json("show", str(job))
    history = view["attempt_history"]
    assert view["status"] == "SUCCEEDED" and len(history) == 2 and history[0]["outcome"] in ("LOST", "RETRY")
    assert history[1]["resumed_from"] and "/attempts/1/checkpoint-" in history[1]["resumed_from"]
    assert [a["kind"] for a in view["artifacts"]] == ["checkpoint"]  # published once, by the attempt that finished
    assert "the database was unavailable" in worker.log_path.read_text()

    from sqlalchemy import select

    from bertq.db.models import Metric

    with bertq.sessions()() as session:
        epochs = session.scalars(
            select(Metric.epoch).where(Metric.job_id == job, Metric.name == "eval_accuracy", Metric.epoch.is_not(None))
        ).all()
        loss_steps = session.scalars(select(Metric.step).where(Metric.job_id == job, Metric.name == "train_loss")).all()
    assert sorted(round(e) for e in epochs) == list(range(1, 11))  # each epoch's evaluation once
    assert len(loss_steps) == len(set(loss_steps))


@pytest.fixture
def small_disk(tmp_path):  # type: ignore[no-untyped-def]
    """A real 1 MiB file system (tmpfs), nearly full, to write outputs onto."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()}); the disk-full test needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_disk_full_while_writing_outputs_is_a_retryable_error_and_leaves_no_truncated_file(
    bertq_any_db, tiny_classifier, tmp_path, small_disk
):
    bertq = bertq_any_db
    bertq.env["BERTQ_RETRY_DELAY_SECONDS"] = "3"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (1024 * 1024 - 96 * 1024))  # about 90 KiB left
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"a long enough sentence about film number {i}\n" for i in range(4000)))
    output = small_disk / "out"
    parent = json.loads(
        bertq.run(
            "submit",
            "infer",
            "--model",
            str(tiny_classifier),
            "--task",
            "classify",
            "--input",
            str(corpus),
            "--output",
            str(output),
            "--shards",
            "1",
            "--json",
            check=True,
        ).stdout
    )["id"]
    bertq.start_worker()

    def planned_shard():  # type: ignore[no-untyped-def]
        children = bertq.json("show", str(parent))["children"]
        return next((c["id"] for c in children if c["kind"] == "infer_shard"), None)

    shard = _wait_for(planned_shard, timeout=120)  # the planning step adds it on the worker

    def first_attempt_ended():  # type: ignore[no-untyped-def]
        history = bertq.json("show", str(shard))["attempt_history"]
        return history and history[0]["outcome"] and history[0]

    first = _wait_for(first_attempt_ended, timeout=180)
    assert first["outcome"] == "RETRY"
    assert "disk full" in first["error"] and "No space left on device" in first["error"]
    assert f"{output}/part-00000.attempt-1.jsonl" in first["error"]  # names the file it was writing
    assert not list(output.glob("*part-*"))  # no truncated file under its final name, no leftover either
    filler.unlink()  # the operator frees space; the retry finishes the job
    assert bertq.run("wait", str(parent), "--timeout", "180").returncode == 0
    [part] = output.glob("part-*.jsonl")
    ids = [json.loads(line)["id"] for line in part.read_text().splitlines()]
    assert ids == [f"corpus.txt:{n}" for n in range(1, 4001)]
    assert [a["outcome"] for a in bertq.json("show", str(shard))["attempt_history"]] == ["RETRY", "SUCCEEDED"]


def test_workers_alone_recover_a_killed_peer_without_beat(bertq, tiny_model, tiny_data):
    """No `bertq beat` runs: the surviving worker reaps the dead one's expired lease and requeues."""
    bertq.env.update(SLOW_STEPS, BERTQ_WORKER_HEARTBEAT="1")
    workers = {"one": bertq.start_worker(name="one@%h"), "two": bertq.start_worker(name="two@%h")}
    job = _submit_finetune(bertq, tiny_model, tiny_data, "--epochs", "3")
    _wait_for(lambda: _checkpoints(bertq, job))
    owner = bertq.json("show", str(job))["lease_owner"].split("@", 1)[0]
    os.killpg(workers[owner].pid, signal.SIGKILL)
    assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0
    history = bertq.json("show", str(job))["attempt_history"]
    assert [a["outcome"] for a in history] == ["LOST", "SUCCEEDED"]
    survivor = "two" if owner == "one" else "one"
    assert history[1]["worker"].startswith(f"{survivor}@")
