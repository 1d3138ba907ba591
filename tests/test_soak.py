"""bench/soak.sh's short version: two and a half minutes of mixed jobs under random faults (a fixed
seed), then the drain and the checks: about four minutes in all. The 30-minute run's figures are in
the README's Guarantees section."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_minutes_of_faults_lose_nothing_and_run_nothing_twice():
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTQ_")}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "soak.sh"), "--minutes", "2.5", "--seed", "7", "--database", "sqlite",
         "--workers", "2", "--every", "12", "--in-flight", "3", "--corpus-lines", "1500", "--drain-minutes", "6"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    report = done.stdout[-4000:] + done.stderr[-3000:]
    assert done.returncode == 0, report
    injected = int(re.search(r"faults injected: .* total (\d+)", done.stdout).group(1))  # type: ignore[union-attr]
    assert injected >= 5, report
    checks = re.findall(r"check (.+): (\d+) violations", done.stdout)
    assert len(checks) == 8 and all(count == "0" for _, count in checks), report
    assert "bulk outputs checked" in done.stdout and "schedule fires" in done.stdout, report
