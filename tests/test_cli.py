"""The command line: instant, torch-free, configuration shown with secrets masked."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import sys
from bertq.cli.main import cli
try:
    cli(sys.argv[1:], prog_name="bertq")
except SystemExit as done:
    code = done.code
heavy = sorted(m for m in ("torch", "transformers", "datasets", "accelerate") if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""


def _heavy_modules(bertq, *args: str) -> str:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], env=bertq.env, capture_output=True, text=True)
    return result.stderr.rsplit("HEAVY=", 1)[1].strip()


def test_cli_commands_never_import_torch_or_transformers(bertq, tiny_model, tiny_data):
    train, dev = tiny_data
    submit = [
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
    ]
    commands = (
        ["--help"],
        ["config"],
        ["up"],
        submit,
        ["jobs"],
        ["show", "1"],
        ["models"],
        ["cancel", "1"],
        ["report"],
        ["schedule", "list"],
        ["reconcile"],
        ["submit", "infer", "--help"],
        ["submit", "distill", "--help"],
        ["submit", "evaluate", "--help"],
    )
    for args in commands:
        assert _heavy_modules(bertq, *args) == "", args


def test_a_database_that_cannot_be_reached_is_one_clear_line(bertq):
    """The soak caught `bertq jobs` printing a psycopg traceback while PostgreSQL restarted."""
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bertq.env["BERTQ_DATABASE_URL"] = f"postgresql+psycopg://bertq:secret@127.0.0.1:{port}/bertq"
    result = bertq.run("jobs")
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert f"the database postgresql+psycopg://bertq:***@127.0.0.1:{port}/bertq cannot be used" in result.stderr
    assert "Connection refused" in result.stderr and "BERTQ_DATABASE_URL" in result.stderr


def test_config_json_masks_passwords(bertq):
    env = dict(
        bertq.env,
        BERTQ_BROKER_URL="redis://:s3cret@redis.example:6379/0",
        BERTQ_DATABASE_URL="postgresql+psycopg://bertq:hunter2@db.example/bertq",
    )
    result = subprocess.run(
        [sys.executable, "-m", "bertq.cli", "config", "--json"], env=env, capture_output=True, text=True, check=True
    )
    values = json.loads(result.stdout)
    assert {"home", "database_url", "broker_url", "artifacts"} <= set(values)
    assert "s3cret" not in result.stdout and "hunter2" not in result.stdout
    assert values["broker_url"] == "redis://:***@redis.example:6379/0"
    assert values["database_url"] == "postgresql+psycopg://bertq:***@db.example/bertq"
    assert values["home"] == str(bertq.home)


def test_embedded_redis_requires_a_password_is_reused_and_stops(bertq):
    import redis

    from bertq.broker import broker_url

    bertq.run("up", check=True)
    state = json.loads((bertq.home / "redis" / "server.json").read_text())
    open_client = redis.Redis(host="127.0.0.1", port=state["port"], protocol=2)
    try:
        open_client.ping()
        raise AssertionError("an unauthenticated client was let in")
    except redis.AuthenticationError as error:
        assert "Authentication required" in str(error)  # the server answered NOAUTH
    assert redis.Redis.from_url(broker_url(bertq.settings())).ping()
    assert (bertq.home / "redis" / "appendonlydir").exists() or any((bertq.home / "redis").glob("*.aof*"))

    bertq.run("up", check=True)
    assert json.loads((bertq.home / "redis" / "server.json").read_text())["pid"] == state["pid"]  # reused

    assert "stopped" in bertq.run("down", check=True).stdout
    assert "was not running" in bertq.run("down", check=True).stdout


def test_external_broker_url_means_nothing_is_started(bertq):
    env = dict(bertq.env, BERTQ_BROKER_URL="redis://127.0.0.1:1/0")
    result = subprocess.run([sys.executable, "-m", "bertq.cli", "down"], env=env, capture_output=True, text=True)
    assert "started no Redis" in result.stdout
    assert not (bertq.home / "redis" / "server.json").exists()


def test_help_says_when_eval_is_required(bertq):
    """A new user read `--eval` as optional, then submit refused its absence: the help says when."""
    for command in (["submit", "finetune"], ["submit", "sweep"]):
        text = " ".join(bertq.run(*command, "--help", check=True).stdout.split())
        assert "Required with your own --train" in text and "default: the task's validation split" not in text
