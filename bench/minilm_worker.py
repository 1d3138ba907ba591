"""What the bulk-inference benches share: a fresh bertq home with one worker, and MiniLM with an
untrained two-class head (speed is the point). `python bench/<bench>.py` puts bench/ on the path."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

BERTQ = [sys.executable, "-m", "bertq.cli"]


def start(prefix: str) -> tuple[Path, dict[str, str], Path, subprocess.Popen]:
    """(the run's folder, the environment to run bertq in, the model folder, the worker process);
    the worker is in its own process group (`stop` ends it and the embedded Redis)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BERTQ_")},
        "BERTQ_HOME": str(root / "home"),
        "BERTQ_ALLOWED_ROOTS": str(root),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertq.models import minilm_folder

    model = root / "minilm-cls"
    AutoModelForSequenceClassification.from_pretrained(minilm_folder(), num_labels=2).save_pretrained(model)
    AutoTokenizer.from_pretrained(minilm_folder()).save_pretrained(model)
    worker = subprocess.Popen([*BERTQ, "worker", "--concurrency", "1"], env=env, stdout=open(root / "worker.log", "w"),  # noqa: SIM115
                              stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    return root, env, model, worker


def stop(env: dict[str, str], worker: subprocess.Popen) -> None:
    """End a bench's worker (its whole process group), then the embedded Redis it started, which
    outlives workers by design."""
    subprocess.run(["pkill", "-TERM", "-g", str(worker.pid)], check=False)
    worker.wait(timeout=60)
    subprocess.run([*BERTQ, "down"], env=env, capture_output=True, check=False)
