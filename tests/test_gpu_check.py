"""bench/gpu_check.sh runs end to end in its CPU dry mode, so the GPU check cannot rot unnoticed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_runs_in_its_cpu_dry_mode_and_prints_its_table():
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTQ_")}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry", "--sentences", "300"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0].strip("| ") for row in table[1:]] == [
        "device", "fine-tune", "evaluate fp32", "evaluate fp16", "evaluate bf16", "bulk classify", "distil",
    ]  # fmt: skip
    assert "300 sentences" in done.stdout and "padding efficiency" in done.stdout
