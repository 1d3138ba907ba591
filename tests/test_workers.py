"""The worker registry: workers record themselves, `bertq workers` lists them, `--queue auto` routes
by them, and a job no live worker can take says so."""

from __future__ import annotations

import json
import os


def test_workers_register_route_and_unregister(bertq, tiny_classifier, tiny_data):
    process = bertq.start_worker("--queues", "cpu,special", name="alpha@here")
    [worker] = bertq.json("workers")
    assert worker["name"] == "alpha@here" and worker["queues"] == ["cpu", "special"]
    assert worker["device"] == "cpu" and worker["live"] and worker["torch_version"]
    assert "alpha@here" in bertq.run("workers", check=True).stdout

    _, dev = tiny_data
    common = [
        "submit",
        "evaluate",
        "--model",
        str(tiny_classifier),
        "--task",
        "sst2",
        "--data",
        str(dev),
        "--max-length",
        "32",
        "--json",
    ]
    # auto: no live GPU worker, so the cpu queue.
    job = json.loads(bertq.run(*common, "--latency-samples", "2", check=True).stdout)["id"]
    assert bertq.json("show", str(job))["queue"] == "cpu"
    assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0
    measured = bertq.json("show", str(job))
    # --device auto (the default): the device comes from the worker that ran it.
    assert measured["result"]["device"] == "cpu" and measured["metrics"]["throughput_per_s"] > 0

    # A queue nobody consumes: the job says so in `jobs` and `show`.
    stranded = json.loads(bertq.run(*common, "--queue", "nowhere", check=True).stdout)["id"]
    row = next(j for j in bertq.json("jobs") if j["id"] == stranded)
    assert row["status"] == "QUEUED" and row["no_live_worker"]
    assert "no live worker consumes queue 'nowhere'" in bertq.run("show", str(stranded), check=True).stdout
    assert "no live worker consumes queue 'nowhere'" in bertq.run("jobs", check=True).stdout
    waited = bertq.run("wait", str(stranded), "--timeout", "2")
    assert waited.returncode == 3 and "no live worker consumes queue 'nowhere'" in waited.stderr
    assert (
        "timed out waiting for job" in waited.stderr.splitlines()[-1] and "'nowhere'" in waited.stderr.splitlines()[-1]
    )
    assert not next(j for j in bertq.json("jobs") if j["id"] == job)["no_live_worker"]
    # A typo of a known queue is refused with the name it resembles; nothing is enqueued.
    before = len(bertq.json("jobs"))
    typo = bertq.run(*common, "--queue", "cpuu")
    assert typo.returncode == 2 and "no worker consumes that queue; did you mean 'cpu'?" in typo.stderr
    typo = bertq.run(*common, "--queue", "specail")
    assert typo.returncode == 2 and "did you mean 'special'?" in typo.stderr  # a live worker's own queue
    assert len(bertq.json("jobs")) == before

    # A GPU worker's row (this machine has no GPU: the row is written as a GPU worker would write it).
    from bertq.db import workers

    with bertq.sessions()() as session, session.begin():
        workers.register(
            session, name="gpu0@box", host="box", queues=["gpu"], device="cuda", gpu_name="H200", bertq_version="x"
        )
    job = json.loads(bertq.run(*common, check=True).stdout)["id"]
    assert bertq.json("show", str(job))["queue"] == "gpu"
    bertq.run("cancel", str(job), check=True)

    bertq.stop_workers()
    assert process.poll() is not None
    names = {w["name"]: w for w in bertq.json("workers", "--all")}
    assert not names["alpha@here"]["live"] and names["alpha@here"]["stopped_at"]
    assert "alpha@here" not in {w["name"] for w in bertq.json("workers")}


def test_a_worker_on_a_gpu_machine_records_the_gpu(tmp_path, monkeypatch):
    """No GPU here: a stand-in `nvidia-smi` on PATH answers as the real one does on an H200 machine
    (the query and its CSV are nvidia-smi's documented format)."""
    from bertq.worker.registry import describe_device

    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '0, NVIDIA H200, 143771'\necho '1, NVIDIA H200, 143771'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert describe_device() | {"torch_version": None} == {
        "device": "cuda",
        "gpu_name": "NVIDIA H200",
        "gpu_memory_mb": 143771,
        "torch_version": None,
    }
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a worker told to see no GPU
    assert describe_device()["device"] == "cpu"


def test_half_precision_is_the_gpus_native_one():
    """bf16 only where the GPU computes it natively (compute capability 8.0 on); older GPUs get fp16
    (training with loss scaling), a CPU fp32. Capabilities as the CUDA runtime reports them."""
    from bertq.worker.loading import half_precision

    assert half_precision((7, 5)) == "fp16"  # T4: bf16 only emulated
    assert half_precision((7, 0)) == "fp16"  # V100
    assert half_precision((8, 0)) == "bf16"  # A100
    assert half_precision((8, 9)) == "bf16"  # L4
    assert half_precision((9, 0)) == "bf16"  # H100/H200
    assert half_precision(None) == "fp32"


def test_one_pinned_worker_per_gpu_with_a_fresh_child_per_job(bertq, tiny_classifier, tiny_data, tmp_path):
    """`bertq worker --gpus all`: one worker process per GPU, each seeing its own device only. No GPU
    here: a stand-in nvidia-smi lists two (documented query format); the jobs themselves run on the
    CPU, since torch sees no CUDA device."""
    import signal
    import subprocess
    import sys
    import time

    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        '  *index,name*) echo "0, NVIDIA A100-SXM4-80GB, 81920"; echo "1, Tesla T4, 15360" ;;\n'
        "  *) echo 0; echo 1 ;;\n"
        "esac\n"
    )
    fake.chmod(0o755)
    bertq.env["PATH"] = f"{fake.parent}:{bertq.env['PATH']}"
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "bertq.cli", "worker", "--gpus", "all", "--name", "box"],
        env=bertq.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        rows: list = []
        while len(rows) < 2 and time.monotonic() < deadline:
            rows = bertq.json("workers")
            time.sleep(0.5)
        by_gpu = {row["name"].split("-")[1]: row for row in rows}
        assert set(by_gpu) == {"gpu0", "gpu1"}, rows
        assert by_gpu["gpu0"]["gpu_name"] == "NVIDIA A100-SXM4-80GB" and by_gpu["gpu0"]["queues"] == ["gpu"]
        assert by_gpu["gpu1"]["gpu_name"] == "Tesla T4" and by_gpu["gpu1"]["gpu_memory_mb"] == 15360

        _, dev = tiny_data
        jobs = [
            json.loads(
                bertq.run(
                    "submit", "evaluate", "--model", str(tiny_classifier), "--task", "sst2", "--data", str(dev),
                    "--max-length", "32", "--latency-samples", "2", "--queue", "gpu", "--json", check=True,
                ).stdout
            )["id"]
            for _ in range(3)
        ]  # fmt: skip
        for job in jobs:
            assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0
        runs = [bertq.json("show", str(job))["attempt_history"][-1]["worker"] for job in jobs]
        nodes = [run.split("/pid")[0] for run in runs]
        assert len(set(runs)) == 3  # a fresh child process for every job, even on one GPU's worker
        assert len(set(nodes)) <= 2
    finally:
        os.killpg(supervisor.pid, signal.SIGTERM)
        supervisor.wait(timeout=30)
    assert all(not row["live"] for row in bertq.json("workers", "--all"))
