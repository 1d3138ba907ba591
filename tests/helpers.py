"""Helpers the fault and security tests share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest


def beat(bertq, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bertq.cli", "beat", "--interval", "1", *extra],
        env=bertq.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def wait_for(predicate, timeout: float = 120, every: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting for the condition")


POSTGRES_ONLY = pytest.mark.parametrize("bertq_any_db", ["postgres"], indirect=True)
"""For a fault whose SQLite side the soak in CI covers too (`tests/test_soak.py`: workers killed
mid-shard, Redis restarted, the queue flushed, all on SQLite), so the suite runs it once."""
