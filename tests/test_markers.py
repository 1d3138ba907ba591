"""The README's quick subsets select what they say: `-m postgres` is exactly the PostgreSQL tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _collected(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *args],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_the_postgres_marker_selects_the_postgresql_tests_and_only_them():
    on_postgres = _collected("-m", "postgres", "tests/test_duplicate_delivery.py", "tests/test_store.py")
    assert on_postgres and all("[postgres]" in test or "test_store.py" in test for test in on_postgres)
    elsewhere = _collected("-m", "not postgres", "tests/test_duplicate_delivery.py")
    assert elsewhere and not any("[postgres]" in test for test in elsewhere)
