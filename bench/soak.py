"""Soak: a mixed workload under random faults for a while, then checks that nothing was lost, run
twice, doubled or left hanging. `bench/soak.sh` runs it; see its header for the options.

The workload (a tiny 2-layer BERT, so that many jobs run on two cores): fine-tunes, distillation
pipelines, sharded bulk inference over the Reddit comments of ../shared/data/corpus, evaluations,
and a schedule firing an evaluation every minute (`bertq beat`). At most --in-flight submitted jobs
are unfinished at a time. The chaos loop, at random intervals of --every seconds on average, picks
one fault: SIGKILL a worker (restarted 2 s later), SIGSTOP one for longer than a lease, kill and
restart Redis, flush the queue's list in Redis, restart the database (PostgreSQL: pg_ctl stop and
start; SQLite: another process holds the write lock), fill the artifact disk (a tmpfs) for a few
seconds. Then everything is given back and the queue drains, and the checks run from the database
and the files:
- every job ended (nothing QUEUED, WAITING or RUNNING after the drain);
- each one SUCCEEDED, or ended with a recorded reason that names an injected fault;
- no job has two attempts that succeeded, and a job's success is its last attempt's (the fence);
- every bulk output holds each input id exactly once, and every file it lists has its checksum;
- metric rows are unique per (job, name, step) among the attempts that count;
- every schedule slot between the first and last fired once, and each fire submitted its job.
It prints the faults injected and each check's count, and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import collections
import csv
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SHARED = BENCH.parents[1] / "shared" / "data"
PYTHON = sys.executable
BERTQ = [PYTHON, "-m", "bertq.cli"]
LEASE = 8
FAULT_WORDS = (
    "killed",
    "lost",
    "attempts",
    "no space",
    "disk full",
    "database",
    "locked",
    "connection",
    "broker",
    "redis",
    "interrupted",
)
"""What a failure's recorded reason must contain to count as an injected fault's (lower case)."""


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # One stream each, so that the jobs submitted, in order, depend on the seed alone, not on timing.
        self.kinds = random.Random(args.seed)
        self.random = random.Random(args.seed + 1)  # the faults
        self.pauses = random.Random(args.seed + 2)
        self.root = Path(tempfile.mkdtemp(prefix="bertq-soak-"))
        os.chmod(self.root, 0o755)
        self.disk = self.root / "disk"
        self.disk.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(self.disk)],
                                 capture_output=True, text=True)  # fmt: skip
        self.small_disk = mounted.returncode == 0
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BERTQ_")}
        self.env.update(
            BERTQ_HOME=str(self.root / "home"),
            BERTQ_ARTIFACTS=str(self.disk / "artifacts"),
            BERTQ_ALLOWED_ROOTS=f"{self.root}{os.pathsep}{SHARED}",
            BERTQ_LEASE_SECONDS=str(LEASE),
            BERTQ_HEARTBEAT_SECONDS="2",
            BERTQ_WORKER_HEARTBEAT="2",
            BERTQ_RETRY_DELAY_SECONDS="3",
            BERTQ_RECONCILE_SECONDS="15",
            BERTQ_DB_BUSY_SECONDS="5",
            BERTQ_MAX_ATTEMPTS="6",
            BERTQ_FAULT_STEP_SECONDS="0.02",  # training steps long enough for a fault to land mid-job
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_VERBOSITY="error",
        )
        self.pg_stop: list[str] = []
        self.pg_start: list[str] = []
        if args.database == "postgres":
            sys.path.insert(0, str(BENCH))
            from load import start_postgres  # bench/load.py: a throwaway cluster, fsync on

            url, self.pg_stop, self.pg_start = start_postgres(self.root / "pg")
            self.env["BERTQ_DATABASE_URL"] = url
        self.workers: dict[int, subprocess.Popen | None] = {}
        self.processes: list[subprocess.Popen] = []
        self.faults: collections.Counter[str] = collections.Counter()
        self.submitted: collections.Counter[str] = collections.Counter()
        self.refused: collections.Counter[str] = collections.Counter()
        self.jobs: list[tuple[str, int]] = []
        self.outputs: dict[int, Path] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()

    # -- set-up ---------------------------------------------------------------------------

    def bertq(self, *args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*BERTQ, *args], env=self.env, capture_output=True, text=True, check=check,
                              timeout=timeout)  # fmt: skip

    def prepare(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from bertq.demo import write_demo_data, write_tiny_model

        self.model = write_tiny_model(self.root / "tiny-bert")
        self.classifier = self.root / "tiny-classifier"
        labels = {0: "negative", 1: "positive"}
        AutoModelForSequenceClassification.from_pretrained(
            self.model, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}
        ).save_pretrained(self.classifier)
        AutoTokenizer.from_pretrained(self.model).save_pretrained(self.classifier)
        self.train, self.dev = write_demo_data(self.root / "data", train=160, dev=48)
        with open(SHARED / "corpus" / "goemotions_reddit_comments.tsv", encoding="utf-8") as handle:
            rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            texts = [r["text"].replace("\n", " ").strip() for r in rows]
        self.corpus = self.root / "reddit.txt"
        lines = [t for t in texts if t][: self.args.corpus_lines]
        self.corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.corpus_ids = [f"reddit.txt:{n}" for n in range(1, len(lines) + 1)]
        self.bertq("db", "upgrade", check=True)
        from bertq.broker import ensure_embedded_redis
        from bertq.config import load_settings

        self.settings = load_settings(self.env)
        ensure_embedded_redis(self.settings)
        for index in range(self.args.workers):
            self.start_worker(index)
        beat = subprocess.Popen([*BERTQ, "beat", "--interval", "2", "--reconcile-every", "10",
                                 "--reconcile-older-than", "10"], env=self.env,
                                stdout=open(self.root / "beat.log", "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
                                start_new_session=True)  # fmt: skip
        self.processes.append(beat)
        self.bertq("schedule", "add", "soak-evaluate", "--cron", "* * * * *", "--", *self.evaluate_args(), check=True)

    def start_worker(self, index: int) -> None:
        log = open(self.root / f"worker-{index}.log", "a")  # noqa: SIM115 - the worker writes to it
        self.workers[index] = subprocess.Popen(
            [*BERTQ, "worker", "--queues", "cpu", "--concurrency", "1", "--name", f"soak{index}-{int(time.time())}@%h"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def evaluate_args(self) -> list[str]:
        return ["submit", "evaluate", "--model", str(self.classifier), "--task", "sst2", "--data", str(self.dev),
                "--max-length", "32", "--latency-samples", "2", "--queue", "cpu"]  # fmt: skip

    # -- the workload ---------------------------------------------------------------------

    def submit_one(self) -> None:
        kind = self.kinds.choices(["finetune", "distill", "infer", "evaluate"], weights=[3, 1, 2, 2])[0]
        common = ["--task", "sst2", "--train", str(self.train), "--eval", str(self.dev), "--max-length", "32",
                  "--batch-size", "16", "--queue", "cpu"]  # fmt: skip
        if kind == "finetune":
            args = ["submit", "finetune", "--model", str(self.model), *common, "--epochs", "3"]
        elif kind == "distill":
            args = ["submit", "distill", "--teacher", str(self.model), "--student", "teacher", "--student-layers",
                    "1", *common, "--epochs", "1"]  # fmt: skip
        elif kind == "infer":
            output = self.disk / "out" / f"{len(self.jobs)}"
            args = ["submit", "infer", "--model", str(self.classifier), "--task", "classify", "--input",
                    str(self.corpus), "--output", str(output), "--shards", "3", "--no-cache", "--queue", "cpu"]  # fmt: skip
        else:
            args = self.evaluate_args()
        try:
            done = self.bertq(*args, "--json", timeout=60)
        except subprocess.TimeoutExpired:
            self.refused[kind] += 1
            return
        if done.returncode != 0:  # a broker or database down at submit: refused, nothing recorded as done
            self.refused[kind] += 1
            return
        job = json.loads(done.stdout)["id"]
        with self.lock:
            self.jobs.append((kind, job))
            self.submitted[kind] += 1
            if kind == "infer":
                self.outputs[job] = output

    def unfinished(self) -> int:
        from sqlalchemy import func, select

        from bertq.db.models import FINISHED, Job

        ids = [job for _, job in self.jobs]
        if not ids:
            return 0
        try:
            with self.session() as session:
                return int(
                    session.scalar(
                        select(func.count()).select_from(Job).where(Job.id.in_(ids), Job.status.not_in(FINISHED))
                    )
                    or 0
                )
        except Exception:  # noqa: BLE001 - the database may be the fault of the moment
            return self.args.in_flight

    def workload(self) -> None:
        while not self.stop.is_set():
            if self.unfinished() < self.args.in_flight:
                self.submit_one()
            self.stop.wait(self.pauses.uniform(1, 4))

    # -- the faults -----------------------------------------------------------------------

    def chaos(self) -> None:
        faults = ["kill_worker", "stop_worker", "restart_redis", "flush_queue", "restart_database"]
        if self.small_disk:
            faults.append("fill_disk")
        while not self.stop.wait(self.random.expovariate(1 / self.args.every)):
            fault = self.random.choice(faults)
            try:
                getattr(self, fault)()
                self.faults[fault] += 1
            except Exception as error:  # noqa: BLE001 - a fault that could not be injected is counted apart
                self.faults[f"{fault} (could not inject: {type(error).__name__})"] += 1

    def a_worker(self) -> tuple[int, subprocess.Popen]:
        index = self.random.choice([i for i, p in self.workers.items() if p is not None])
        process = self.workers[index]
        assert process is not None
        return index, process

    def kill_worker(self) -> None:
        index, process = self.a_worker()
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self.workers[index] = None
        time.sleep(2)
        self.start_worker(index)

    def stop_worker(self) -> None:
        _, process = self.a_worker()
        os.killpg(process.pid, signal.SIGSTOP)
        time.sleep(LEASE + 6)  # its leases expire: another worker takes its job over
        os.killpg(process.pid, signal.SIGCONT)

    def restart_redis(self) -> None:
        from bertq.broker import ensure_embedded_redis, kill_embedded_redis

        kill_embedded_redis(self.settings)
        time.sleep(2)
        ensure_embedded_redis(self.settings)

    def flush_queue(self) -> None:
        import redis

        from bertq.broker import broker_url

        redis.Redis.from_url(broker_url(self.settings)).delete("cpu")

    def restart_database(self) -> None:
        if self.pg_stop:
            subprocess.run(self.pg_stop, check=True, capture_output=True)
            time.sleep(3)
            subprocess.run(self.pg_start, check=True, capture_output=True)  # the same port and socket folder
            return
        holder = subprocess.Popen([PYTHON, "-c", (
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(self.root / 'home' / 'bertq.db')!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(8); c.rollback()\n"
        )], stdout=subprocess.PIPE, text=True)  # fmt: skip
        holder.wait(timeout=60)

    def fill_disk(self) -> None:
        filler = self.disk / "filler"
        try:
            with open(filler, "wb") as out:
                while True:
                    out.write(b"\0" * (1 << 20))
        except OSError:
            pass
        time.sleep(4)
        filler.unlink()

    # -- the end --------------------------------------------------------------------------

    def session(self):  # type: ignore[no-untyped-def]
        from bertq.db.engine import sessions

        return sessions(self.settings)()

    def drain(self) -> bool:
        from bertq.broker import ensure_embedded_redis

        ensure_embedded_redis(self.settings)  # every fault given back
        if self.pg_start:
            subprocess.run(self.pg_start, capture_output=True)  # refused when already running
        for index, process in list(self.workers.items()):
            if process is None or process.poll() is not None:
                self.start_worker(index)
            else:
                os.killpg(process.pid, signal.SIGCONT)
        self.bertq("schedule", "remove", "soak-evaluate")
        deadline = time.monotonic() + self.args.drain_minutes * 60
        from sqlalchemy import func, select

        from bertq.db.models import FINISHED, Job

        while time.monotonic() < deadline:
            try:
                with self.session() as session:
                    left = session.scalar(select(func.count()).select_from(Job).where(Job.status.not_in(FINISHED)))
            except Exception:  # noqa: BLE001
                left = -1
            if left == 0:
                return True
            time.sleep(2)
        return False

    def check(self) -> dict[str, list[str]]:
        from sqlalchemy import func, select

        from bertq.db.models import FINISHED, Attempt, Job, Metric, ScheduleFire

        violations: dict[str, list[str]] = collections.defaultdict(list)
        counts: collections.Counter[str] = collections.Counter()
        with self.session() as session:
            jobs = session.scalars(select(Job)).all()
            for job in jobs:
                counts[f"jobs {job.status}"] += 1
                if job.status not in FINISHED:
                    violations["unfinished"].append(f"job {job.id} ({job.kind}) {job.status}")
                elif job.status != "SUCCEEDED":
                    # A pipeline's parent quotes its failed step's reason ("step N (kind) failed: ...");
                    # a dependant that never ran names the job it waited for, checked on its own row.
                    reason = (job.error or "").lower()
                    waited = reason.startswith("not run: job ") and "which it waits for" in reason
                    if not waited and not any(word in reason for word in FAULT_WORDS):
                        violations["failed without a fault's reason"].append(f"job {job.id} ({job.kind}): {job.error}")
            attempts = collections.defaultdict(list)
            for attempt in session.scalars(select(Attempt)).all():
                attempts[attempt.job_id].append(attempt)
            for job in jobs:
                won = [a.number for a in attempts[job.id] if a.outcome == "SUCCEEDED"]
                counts["attempts"] += len(attempts[job.id])
                if len(won) > 1 or (job.status == "SUCCEEDED" and won and won[0] != job.attempts):
                    violations["past the fence"].append(f"job {job.id}: succeeded attempts {won} of {job.attempts}")
            doubled = session.execute(
                select(Metric.job_id, Metric.name, Metric.step, func.count())
                .group_by(Metric.job_id, Metric.name, Metric.step, Metric.split, Metric.epoch)
                .having(func.count() > 1)
            ).all()
            counts["metric rows"] = session.scalar(select(func.count()).select_from(Metric)) or 0
            for job_id, name, step, count in doubled:
                violations["metric rows doubled"].append(f"job {job_id} {name} step {step}: {count} rows")
            fires = session.scalars(select(ScheduleFire).order_by(ScheduleFire.slot)).all()
            counts["schedule fires"] = len(fires)
            slots = [fire.slot for fire in fires]
            for earlier, later in zip(slots, slots[1:]):
                if later - earlier != timedelta(minutes=1):
                    violations["schedule slots missed or doubled"].append(f"{earlier} -> {later}")
            for fire in fires:
                if fire.job_id is None:
                    violations["schedule fire without its job"].append(f"slot {fire.slot}: {fire.error}")
            by_id = {job.id: job for job in jobs}
        for job_id, folder in self.outputs.items():
            if by_id[job_id].status != "SUCCEEDED":
                continue
            counts["bulk outputs checked"] += 1
            manifest = json.loads((folder / "manifest.json").read_text())
            ids: list[str] = []
            for entry in manifest["files"]:
                data = (folder / entry["path"]).read_bytes()
                if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                    violations["bulk output damaged"].append(f"job {job_id}: {entry['path']}")
                ids.extend(json.loads(line)["id"] for line in data.decode().splitlines())
            if sorted(ids) != sorted(self.corpus_ids) or len(ids) != len(set(ids)):
                missing = len(set(self.corpus_ids) - set(ids))
                violations["bulk ids not exactly once"].append(
                    f"job {job_id}: {len(ids)} ids, {len(set(ids))} distinct, {missing} missing"
                )
        self.counts = counts
        return violations

    def close(self) -> None:
        for process in [*self.processes, *(p for p in self.workers.values() if p is not None)]:
            try:
                os.killpg(process.pid, signal.SIGCONT)
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in [*self.processes, *(p for p in self.workers.values() if p is not None)]:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        from bertq.broker import stop_embedded_redis

        stop_embedded_redis(self.settings)
        if self.pg_stop:
            subprocess.run(self.pg_stop, capture_output=True)
        if self.small_disk:
            subprocess.run(["umount", "-l", str(self.disk)], capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=4, help="submitted jobs unfinished at a time, at most")
    parser.add_argument("--every", type=float, default=20, help="mean seconds between faults")
    parser.add_argument("--corpus-lines", type=int, default=3000)
    parser.add_argument("--drain-minutes", type=float, default=15)
    args = parser.parse_args()
    soak = Soak(args)
    started = time.monotonic()
    try:
        soak.prepare()
        print(f"soak: {args.minutes} min, seed {args.seed}, {args.database}, {args.workers} workers, "
              f"faults every {args.every} s on average; in {soak.root}", flush=True)  # fmt: skip
        threads = [
            threading.Thread(target=soak.workload, daemon=True),
            threading.Thread(target=soak.chaos, daemon=True),
        ]
        for thread in threads:
            thread.start()
        soak.stop.wait(args.minutes * 60)
        soak.stop.set()
        for thread in threads:
            thread.join(timeout=120)
        drained = soak.drain()
        violations = soak.check()
    finally:
        soak.close()
    print(f"ran {time.monotonic() - started:.0f} s; drained: {drained}")
    print("submitted:", dict(soak.submitted), "refused at submit:", dict(soak.refused))
    print("faults injected:", dict(soak.faults), "total", sum(soak.faults.values()))
    print("counts:", dict(soak.counts))
    for check in (
        "unfinished",
        "failed without a fault's reason",
        "past the fence",
        "bulk ids not exactly once",
        "bulk output damaged",
        "metric rows doubled",
        "schedule slots missed or doubled",
        "schedule fire without its job",
    ):
        found = violations.get(check, [])
        print(f"check {check}: {len(found)} violations")
        for line in found[:10]:
            print(f"    {line}")
    return 1 if any(violations.values()) or not drained else 0


if __name__ == "__main__":
    sys.exit(main())
