"""Load: how many jobs per second bertq's claim path holds, on SQLite and PostgreSQL, with W workers.

    .venv/bin/python bench/load.py [--jobs 30] [--workers 1,2,4,8] [--databases sqlite,postgres]

For each database and W: a fresh home, W `bertq worker` processes (concurrency 1 each), then N bulk
inference jobs submitted through the Python API as fast as it goes (each an embedding of 5 lines
with a tiny 2-layer BERT: a planning step, one shard, a finishing step, so 3 claims a job; real
jobs, not no-ops). Measured from the database once all N ended:
- submit rate: bulk jobs recorded and enqueued per second by the submitting process;
- claim latency p50/p95/p99: created (or released) -> RUNNING, over every step of every job;
- sustained jobs/s: N / (last finish - first submit);
- per-step overhead: a shard step's wall time minus the seconds its own model work took.
PostgreSQL is a throwaway cluster started with initdb/pg_ctl (fsync on), SQLite the default file.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def start_postgres(folder: Path) -> tuple[str, list[str], list[str]]:
    """A throwaway cluster in `folder`: its URL, the command that stops it and the one that starts it
    again on the same port and socket folder."""
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    port = 20000 + secrets.randbelow(20000)
    subprocess.run([*as_postgres, "initdb", "-D", str(folder / "data"), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)  # fmt: skip
    pg_ctl = [*as_postgres, "pg_ctl", "-D", str(folder / "data"), "-l", str(folder / "log"), "-w"]
    start = [*pg_ctl, "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200", "start"]
    subprocess.run(start, check=True, capture_output=True)
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", [*pg_ctl, "-m", "fast", "stop"], start


SUBMIT = """
import json, sys, time
from bertq.bulk import build_infer_spec, claim_output, plan_infer
from bertq.db.submit import submit_plan
model, data, out, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
started = time.perf_counter()
for i in range(count):
    spec = build_infer_spec(model=model, model_job=None, task="embed", inputs=[data], output=f"{out}/{i}", shards="1")
    ids = submit_plan(plan_infer(spec, queue="cpu", priority=5))
    claim_output(spec.output, ids[0])
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def run(database: str, workers: int, jobs: int, model: Path, data: Path, root: Path) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix=f"load-{database}-{workers}-", dir=root))
    os.chmod(home, 0o755)  # the postgres user reaches its cluster folder through it
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTQ_")}
    env.update(BERTQ_HOME=str(home), BERTQ_ALLOWED_ROOTS=f"{root}", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    stop_postgres: list[str] = []
    if database == "postgres":
        url, stop_postgres, _ = start_postgres(home / "pg")
        env["BERTQ_DATABASE_URL"] = url
    bertq = [PYTHON, "-m", "bertq.cli"]
    subprocess.run([*bertq, "db", "upgrade"], env=env, check=True, capture_output=True)
    processes = [
        subprocess.Popen(
            [*bertq, "worker", "--queues", "cpu", "--concurrency", "1", "--name", f"w{i}@%h"],
            env=env,
            stdout=open(home / f"worker-{i}.log", "w"),  # noqa: SIM115 - the worker writes to it while it runs
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # noqa: SIM115  # fmt: skip
        for i in range(workers)
    ]
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # every worker registered (its Celery consumer is up)
            listed = subprocess.run([*bertq, "workers", "--json"], env=env, capture_output=True, text=True)
            if listed.returncode == 0 and len(json.loads(listed.stdout or "[]")) >= workers:
                break
            time.sleep(1)
        time.sleep(3)
        submitted = subprocess.run([PYTHON, "-c", SUBMIT, str(model), str(data), str(home / "out"), str(jobs)],
                                   env=env, check=True, capture_output=True, text=True)  # fmt: skip
        submit_seconds = json.loads(submitted.stdout.strip().splitlines()[-1])["seconds"]
        from sqlalchemy import create_engine, func, select
        from sqlalchemy.orm import Session

        from bertq.db.models import Job, JobDependency

        url = env.get("BERTQ_DATABASE_URL") or f"sqlite:///{home / 'bertq.db'}"
        engine = create_engine(url)
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            with Session(engine) as session:
                left = session.scalar(select(func.count()).select_from(Job).where(Job.finished_at.is_(None)))
            if not left:
                break
            time.sleep(0.5)
        with Session(engine) as session:
            rows = session.scalars(select(Job)).all()
            latencies = [(j.started_at - j.created_at).total_seconds() for j in rows if j.started_at]
            parents = [j for j in rows if j.kind == "infer"]
            failed = [j.id for j in rows if j.status != "SUCCEEDED"]
            first = min(j.created_at for j in parents)
            last = max(j.finished_at for j in parents if j.finished_at)
            overhead = [
                (j.finished_at - j.started_at).total_seconds() - float((j.result or {}).get("seconds", 0.0))
                for j in rows
                if j.kind == "infer_shard" and j.finished_at and j.started_at
            ]
            # Latency after release: a step waiting on its dependency is created early; count from
            # when it could run (its dependency's finish), which is what the claim path controls.
            by_id = {j.id: j for j in rows}
            waits_for: dict[int, list[int]] = {}
            for dependency in session.scalars(select(JobDependency)).all():
                waits_for.setdefault(dependency.job_id, []).append(dependency.depends_on_id)
            released = []
            for j in rows:
                if not j.started_at:
                    continue
                ready = max(
                    [j.created_at, *(by_id[d].finished_at for d in waits_for.get(j.id, []) if by_id[d].finished_at)]
                )
                released.append((j.started_at - ready).total_seconds())
        engine.dispose()
        return {
            "database": database,
            "workers": workers,
            "jobs": jobs,
            "steps": len(rows),
            "failed": len(failed),
            "submit_per_s": jobs / submit_seconds,
            "jobs_per_s": jobs / (last - first).total_seconds(),
            "claim_p50_s": _percentile(released, 50),
            "claim_p95_s": _percentile(released, 95),
            "claim_p99_s": _percentile(released, 99),
            "created_to_running_p50_s": statistics.median(latencies),
            "shard_overhead_p50_s": statistics.median(overhead) if overhead else float("nan"),
        }
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, 15)
            except ProcessLookupError:
                pass
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
        if stop_postgres:
            subprocess.run(stop_postgres, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bertq-load-"))
    os.chmod(root, 0o755)
    from bertq.demo import write_tiny_model

    model = write_tiny_model(root / "tiny-bert")
    data = root / "lines.txt"
    data.write_text("".join(f"the movie number {i} was good\n" for i in range(5)))
    print(f"{os.cpu_count()} CPUs; {args.jobs} bulk jobs (3 steps each) per run; results in {root}")
    header = f"{'db':9s} {'W':>2s} {'submit/s':>9s} {'jobs/s':>7s} {'claim p50':>10s} {'p95':>7s} {'p99':>7s} {'overhead p50':>13s} failed"
    print(header)
    for database in args.databases.split(","):
        for workers in (int(w) for w in args.workers.split(",")):
            r = run(database, workers, args.jobs, model, data, root)
            print(f"{database:9s} {workers:2d} {r['submit_per_s']:9.1f} {r['jobs_per_s']:7.2f} {r['claim_p50_s']:9.3f}s "
                  f"{r['claim_p95_s']:6.3f}s {r['claim_p99_s']:6.3f}s {r['shard_overhead_p50_s']:12.3f}s {r['failed']}",
                  flush=True)  # fmt: skip
            (root / f"{database}-{workers}.json").write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
