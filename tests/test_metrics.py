"""`bertq metrics`: Prometheus metrics read from the database, scraped while jobs run."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from bertq.demo import make_examples


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _value(text: str, name: str, **labels: str) -> float | None:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(selector) + r"\}" if labels else "") + r" ([0-9.e+-]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


def test_metrics_show_queues_jobs_rows_per_second_and_workers(bertq, tiny_classifier, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(text for text, _ in make_examples(3000, seed=5)) + "\n")

    def submit_infer(output: str, queue: str) -> int:
        return json.loads(
            bertq.run(
                "submit", "infer", "--model", str(tiny_classifier), "--task", "classify", "--input", str(corpus),
                "--output", str(tmp_path / output), "--shards", "2", "--precision", "fp32", "--token-budget", "256",
                "--queue", queue, "--json", check=True,
            ).stdout
        )["id"]  # fmt: skip

    submit_infer("stranded", "nowhere")  # a queue no worker consumes
    once = bertq.run("metrics", "--once", check=True).stdout
    assert _value(once, "bertq_queue_depth", queue="nowhere") == 1  # its planning step (shards come once planned)
    assert _value(once, "bertq_queue_oldest_age_seconds", queue="nowhere") >= 0
    assert _value(once, "bertq_jobs", kind="infer", status="WAITING") == 1

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bertq.cli", "metrics", "--port", str(port)],
        env=bertq.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        bertq.env["BERTQ_FAULT_STEP_SECONDS"] = "0.02"  # long enough a run to be scraped mid-way
        bertq.start_worker()
        job = submit_infer("out", "cpu")

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return response.read().decode()

        seen_rate = 0.0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not seen_rate:
            try:
                seen_rate = _value(scrape(), "bertq_bulk_rows_per_second") or 0.0
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.3)
        assert seen_rate > 0, "never scraped a running shard's rate"
        assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0
        text = scrape()
        assert _value(text, "bertq_jobs", kind="infer", status="SUCCEEDED") == 1
        assert _value(text, "bertq_jobs", kind="infer_shard", status="SUCCEEDED") == 2
        assert _value(text, "bertq_attempts", outcome="SUCCEEDED") >= 3
        assert _value(text, "bertq_live_workers", device="cpu") == 1
        assert _value(text, "bertq_queue_depth", queue="nowhere") == 1
        assert _value(text, "bertq_queue_depth", queue="cpu") is None  # nothing waits there any more
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
