"""Flower through `bertq flower`: closed without credentials, and it sees bertq's tasks with them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode

import pytest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, *, auth: tuple[str, str] | None = None, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if auth:
        request.add_header("Authorization", "Basic " + b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_flower_refuses_to_start_open_to_the_network(bertq):
    result = bertq.run("flower", "--address", "0.0.0.0")
    assert result.returncode == 2 and "BERTQ_FLOWER_USER" in result.stderr
    result = bertq.run("flower", "--unauthenticated", "--address", "0.0.0.0")
    assert result.returncode == 2 and "127.0.0.1 only" in result.stderr


@pytest.mark.slow
def test_flower_answers_401_without_credentials_and_lists_a_running_bertq_task(bertq, tiny_model, tiny_data):
    port = _free_port()
    env = dict(bertq.env, BERTQ_FLOWER_USER="ops", BERTQ_FLOWER_PASSWORD="s3cret-pw")
    flower = subprocess.Popen(
        [sys.executable, "-m", "bertq.cli", "flower", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _ = _get(base + "/")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "flower did not start"
                time.sleep(0.3)
        assert status == 401
        assert _get(base + "/api/tasks")[0] == 401
        assert _get(base + "/api/task/async-apply/bertq.finetune", method="POST")[0] == 401
        assert _get(base + "/api/worker/shutdown/anyone", method="POST")[0] == 401
        assert _get(base + "/", auth=("ops", "wrong"))[0] == 401
        assert _get(base + "/", auth=("ops", "s3cret-pw"))[0] == 200

        bertq.start_worker()
        train, dev = tiny_data
        job = json.loads(
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
                "--epochs",
                "3",
                "--no-evaluate",
                "--json",
                check=True,
            ).stdout
        )["id"]
        seen = None
        deadline = time.monotonic() + 120
        while seen is None and time.monotonic() < deadline:
            status, body = _get(base + "/api/tasks", auth=("ops", "s3cret-pw"))
            assert status == 200
            for task in json.loads(body).values():
                if task.get("name") == "bertq.finetune" and str(job) in str(task.get("args")):
                    seen = task
            time.sleep(0.5)
        assert seen is not None, "Flower never listed the bertq task"
        assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0

        def task_of(job_id: int, state: str) -> dict:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                tasks = json.loads(_get(base + "/api/tasks", auth=("ops", "s3cret-pw"))[1]).values()
                for task in tasks:
                    if str(job_id) in str(task.get("args")) and task.get("state") == state:
                        return task
                time.sleep(0.5)
            raise AssertionError(f"Flower never showed job {job_id}'s task as {state}")

        # Flower tells the truth: the succeeded job's task names the job; a job that FAILED is a FAILURE.
        done = task_of(job, "SUCCESS")
        assert f"'job': {job}" in str(done["result"]) and "'kind': 'finetune'" in str(done["result"])
        broken = bertq.home / "broken.tsv"
        broken.write_text(train.read_text())
        failing = json.loads(
            bertq.run(
                "submit", "finetune", "--model", str(tiny_model), "--task", "sst2", "--train", str(broken),
                "--eval", str(dev), "--max-length", "32", "--no-evaluate", "--queue", "held", "--json", check=True,
            ).stdout
        )["id"]  # fmt: skip
        broken.write_text("sentence\tlabel\n")  # emptied after the submit checked it: the job fails
        bertq.start_worker("--queues", "held", name="held@%h")
        assert bertq.run("wait", str(failing), "--timeout", "300").returncode != 0
        failure = task_of(failing, "FAILURE")
        assert f"job {failing} (finetune" in failure["exception"] and "no examples" in failure["exception"]
    finally:
        os.killpg(flower.pid, signal.SIGTERM)
        flower.wait(timeout=20)
