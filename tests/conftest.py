"""Fixtures: an isolated bertq home per test, real Redis (the embedded redis-server), real worker
processes, SQLite or a real PostgreSQL, and a tiny BERT (2 layers, 32 wide) built from a config."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
BERTQ = [sys.executable, "-m", "bertq.cli"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--postgres-url", default=os.environ.get("BERTQ_TEST_POSTGRES_URL"))


# --------------------------------------------------------------------------------------------
# PostgreSQL: a throwaway cluster for the session, or the one named by BERTQ_TEST_POSTGRES_URL.


_PG_CTL: list[list[str]] = []
"""[stop command, start command] of the cluster the tests started (none when one was given)."""


def _start_postgres(folder: Path) -> str | None:
    initdb = shutil.which("initdb")
    if initdb is None:
        return None
    as_postgres: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    port = 20000 + secrets.randbelow(20000)
    subprocess.run(
        [*as_postgres, initdb, "-D", str(folder / "data"), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    pg_ctl = [
        *as_postgres,
        shutil.which("pg_ctl") or "pg_ctl",
        "-D",
        str(folder / "data"),
        "-l",
        str(folder / "log"),
        "-w",
    ]
    start = [*pg_ctl, "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start"]
    subprocess.run(start, check=True, capture_output=True)
    _PG_CTL[:] = [[*pg_ctl, "-m", "fast", "stop"], start]
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"


def _database_outage(instance: Bertq, seconds: float) -> None:
    """Make `instance`'s database unusable for `seconds`, then give it back. PostgreSQL: the server
    is stopped and started again. SQLite: another process holds the write lock, so every write fails
    with "database is locked" once the busy timeout (BERTQ_DB_BUSY_SECONDS) has passed."""
    url = instance.env.get("BERTQ_DATABASE_URL")
    if url is None:
        database = instance.home / "bertq.db"
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                (
                    "import sqlite3, sys, time\n"
                    f"c = sqlite3.connect({str(database)!r}, isolation_level=None)\n"
                    "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True)\n"
                    f"time.sleep({seconds}); c.rollback()\n"
                ),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        holder.wait()
        return
    if not _PG_CTL:
        pytest.skip("the outage test stops PostgreSQL: it needs the cluster the tests start themselves")
    stop, start = _PG_CTL
    subprocess.run(stop, check=True, capture_output=True)
    time.sleep(seconds)
    subprocess.run(start, check=True, capture_output=True)


@pytest.fixture(scope="session")
def postgres_admin_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = request.config.getoption("--postgres-url")
    folder = None
    if not url:
        folder = Path(f"/tmp/bertq-test-pg-{os.getpid()}")
        shutil.rmtree(folder, ignore_errors=True)
        try:
            url = _start_postgres(folder)
        except (subprocess.CalledProcessError, OSError) as error:
            url = None
            reason = f"could not start PostgreSQL: {error}"
        else:
            reason = "no initdb on PATH"
        if not url:
            if os.environ.get("CI"):
                pytest.fail(f"PostgreSQL tests must run in CI, but {reason}")
            pytest.skip(reason)
    yield url
    if folder is not None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*as_postgres, "pg_ctl", "-D", str(folder / "data"), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


def _fresh_postgres_database(admin_url: str) -> str:
    import sqlalchemy

    name = f"bertq_test_{secrets.token_hex(4)}"
    engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


# --------------------------------------------------------------------------------------------
# A bertq installation of its own for each test.


@dataclass
class Bertq:
    """One isolated bertq: its home, database, environment; runs the real CLI in a subprocess."""

    home: Path
    env: dict[str, str]
    workers: list[subprocess.Popen] = field(default_factory=list)

    def run(
        self, *args: str, check: bool = False, timeout: float = 600, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        result = subprocess.run([*BERTQ, *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
        if check and result.returncode != 0:
            raise AssertionError(
                f"bertq {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def json(self, *args: str) -> object:
        import json

        return json.loads(self.run(*args, "--json", check=True).stdout)

    def start_worker(self, *extra: str, name: str | None = None) -> subprocess.Popen:
        log = self.home / f"worker-{len(self.workers)}.log"
        handle = open(log, "w")  # noqa: SIM115 - the worker writes to it for as long as it runs
        argv = [*BERTQ, "worker", "--loglevel", "INFO", *extra]
        if name:
            argv += ["--name", name]
        process = subprocess.Popen(argv, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        process.log_path = log  # type: ignore[attr-defined]
        self.workers.append(process)
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker did not start:\n{log.read_text()}")
            time.sleep(0.1)
        return process

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.workers:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def settings(self):  # type: ignore[no-untyped-def]
        from bertq.config import load_settings

        return load_settings(self.env)

    def sessions(self):  # type: ignore[no-untyped-def]
        from bertq.db.engine import sessions

        return sessions(self.settings())


def _make_bertq(home: Path, database_url: str | None) -> Bertq:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTQ_")}
    env.update(
        BERTQ_HOME=str(home),
        # Short leases and heartbeats: no test waits for production timeouts.
        BERTQ_LEASE_SECONDS="6",
        BERTQ_HEARTBEAT_SECONDS="1",
        BERTQ_VISIBILITY_TIMEOUT="3600",
        BERTQ_RETRY_DELAY_SECONDS="1",
        # Test data lives in the temporary folder and ../shared/data (the defaults are ~ and /tmp).
        BERTQ_ALLOWED_ROOTS=os.pathsep.join([tempfile.gettempdir(), str(SHARED_DATA)]),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        PYTHONUNBUFFERED="1",
    )
    if database_url:
        env["BERTQ_DATABASE_URL"] = database_url
    home.mkdir(parents=True, exist_ok=True)
    return Bertq(home=home, env=env)


@pytest.fixture
def bertq(tmp_path: Path) -> Iterator[Bertq]:
    """bertq on SQLite with the embedded Redis."""
    instance = _make_bertq(tmp_path / "home", None)
    yield instance
    _teardown(instance)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The `postgres` marker on every test that uses PostgreSQL, so `-m "not postgres"` leaves them out."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("bertq_any_db") == "postgres"
        if on_postgres or "postgres_admin_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(params=["sqlite", "postgres"])
def bertq_any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bertq]:
    """bertq on SQLite, then again on a fresh PostgreSQL database."""
    url = None
    if request.param == "postgres":
        url = _fresh_postgres_database(request.getfixturevalue("postgres_admin_url"))
    instance = _make_bertq(tmp_path / "home", url)
    yield instance
    _teardown(instance)


def _teardown(instance: Bertq) -> None:
    instance.stop_workers()
    subprocess.run([*BERTQ, "down"], env=instance.env, capture_output=True)


# --------------------------------------------------------------------------------------------
# Tiny model and data.


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with a WordPiece vocabulary of the demo data's words."""
    from transformers import BertTokenizerFast

    from bertq.demo import write_tiny_model

    folder = write_tiny_model(tmp_path_factory.mktemp("tiny-bert"))
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    assert tokenizer.convert_tokens_to_ids("movie") != tokenizer.unk_token_id
    return folder


@pytest.fixture(scope="session")
def tiny_classifier(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT with a two-class head (negative, positive), untrained."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny-classifier")
    AutoModelForSequenceClassification.from_pretrained(
        tiny_model, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1}
    ).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from bertq.demo import write_demo_data

    return write_demo_data(tmp_path_factory.mktemp("data"), train=160, dev=48)


@pytest.fixture
def database_outage():  # type: ignore[no-untyped-def]
    """`database_outage(bertq, seconds)`: the database unusable for a while (see _database_outage)."""
    return _database_outage


pytest_plugins = ["archs"]
"""tests/archs.py: tiny models of every supported architecture (`arch_models`), built once per run."""
