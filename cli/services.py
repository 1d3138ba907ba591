"""`bertq config|up|down|db|worker|beat|reconcile|report|flower|demo|models`: running bertq."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import click

from bertq.cli.group import BertqError, cli, emit_json
from bertq.config import load_settings

# Configuration and services


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def config(as_json: bool) -> None:
    """Show the configuration (from BERTQ_* environment variables), passwords masked."""
    values = load_settings().public_dict()
    if as_json:
        emit_json(values)
        return
    for key, value in values.items():
        click.echo(f"{key:<20} {value}")


@cli.command()
def up() -> None:
    """Start the embedded Redis (when no BERTQ_BROKER_URL is set) and migrate the database."""
    from bertq.broker import ensure_embedded_redis
    from bertq.db.engine import sessions

    settings = load_settings()
    if settings.uses_embedded_redis:
        state = ensure_embedded_redis(settings)
        click.echo(
            f"redis: embedded, 127.0.0.1:{state['port']} (pid {state['pid']}, password in {settings.home}/redis)"
        )
    else:
        click.echo("redis: external, BERTQ_BROKER_URL is set (nothing started)")
    sessions(settings)
    click.echo(f"database: {load_settings().public_dict()['database_url']} (schema up to date)")


@cli.command()
def down() -> None:
    """Stop the embedded Redis that bertq started (external servers are left alone)."""
    from bertq.broker import stop_embedded_redis

    settings = load_settings()
    if not settings.uses_embedded_redis:
        click.echo("BERTQ_BROKER_URL is set: bertq started no Redis, so it stops none")
        return
    click.echo("embedded redis stopped" if stop_embedded_redis(settings) else "embedded redis was not running")


@cli.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations (bertq also does this on first use)."""
    from bertq.db.engine import current_revision, engine_for, upgrade

    settings = load_settings()
    upgrade(settings, revision)
    click.echo(f"database at revision {current_revision(engine_for(settings.database_url))}")


@cli.command()
@click.option("--queues", "-Q", default="cpu", show_default=True, help="Comma-separated queues to consume (gpu, cpu).")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=1, show_default=True, help="Jobs at once.")
@click.option("--pool", type=click.Choice(["prefork", "solo", "threads"]), default="prefork", show_default=True)
@click.option("--name", default=None, help="Worker name (default bertq-<queues>-<pid>@<host>).")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option(
    "--gpus",
    default=None,
    help="all, or GPU indices (0,1): one worker process per GPU, each seeing only its own device "
    "(CUDA_VISIBLE_DEVICES), named <name>-gpuN, with a fresh child per job so GPU memory is released "
    "between jobs. Default queue then: gpu.",
)
def worker(queues: str, concurrency: int, pool: str, name: str | None, loglevel: str, gpus: str | None) -> None:
    """Start a Celery worker that runs bertq jobs (replaces this process; with --gpus, supervises
    one worker process per GPU)."""
    from bertq.broker import broker_url
    from bertq.db.engine import sessions

    settings = load_settings()
    broker_url(settings)  # start the embedded Redis before Celery tries to connect
    sessions(settings)  # migrate once here, not in every child
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if gpus is not None:
        _worker_per_gpu(gpus, queues, name, loglevel)
        return
    node = name or f"bertq-{queues.replace(',', '-')}-{os.getpid()}@%h"
    os.execv(sys.executable, _celery_worker_argv(queues, concurrency, pool, node, loglevel))


def _celery_worker_argv(queues: str, concurrency: int, pool: str, node: str, loglevel: str, *extra: str) -> list[str]:
    os.environ["BERTQ_WORKER_QUEUES"] = queues  # what the worker records in the registry
    os.environ["BERTQ_WORKER_CONCURRENCY"] = str(concurrency)
    return [
        sys.executable, "-m", "celery", "-A", "bertq.worker.celery_app:app", "worker", "-Q", queues,
        "-c", str(concurrency), "--pool", pool, "-n", node, "-E", "--loglevel", loglevel, *extra,
    ]  # fmt: skip


def _worker_per_gpu(gpus: str, queues: str, name: str | None, loglevel: str) -> None:
    """One pinned Celery worker per GPU, supervised here: SIGTERM/SIGINT are passed on (each worker
    then checkpoints its running job), and this process exits when they all have."""
    import signal
    import subprocess

    from bertq.worker_gpus import visible_gpus

    indices = visible_gpus(gpus)
    queues = queues if queues != "cpu" else "gpu"  # --gpus without --queues: the gpu queue
    children = []
    for index in indices:
        node = f"{name or 'bertq'}-gpu{index}-{os.getpid()}@%h"
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=str(index))
        argv = _celery_worker_argv(queues, 1, "prefork", node, loglevel, "--max-tasks-per-child", "1")
        env.update(BERTQ_WORKER_QUEUES=queues, BERTQ_WORKER_CONCURRENCY="1")
        # Each worker in its own session: a signal to this process's group (Ctrl-C, `kill -- -PGID`)
        # reaches this supervisor only, which passes one SIGTERM to each worker's main process. Sent to
        # the whole group, it would also reach a pool child that was just forked for the next job and
        # has not yet reset Celery's handler, which then ignores it and keeps the shutdown waiting.
        children.append(subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=_die_with_parent))
    click.echo(f"started {len(children)} workers, one per GPU ({', '.join(indices)}), on queue(s) {queues}")

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    sys.exit(max(codes) if any(codes) else 0)


def _die_with_parent() -> None:
    """In a supervised worker, before exec: SIGTERM when the supervisor dies, even by SIGKILL (Linux)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@cli.command("metrics")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=9808, show_default=True)
@click.option("--once", is_flag=True, help="Print one scrape in the Prometheus text format and exit.")
def metrics_command(address: str, port: int, once: bool) -> None:
    """Serve Prometheus metrics at /metrics: queue depth and oldest age per queue, jobs by kind and
    status, attempts by outcome, bulk rows/s, live workers by device (read from the database per scrape)."""
    from bertq.cli.metrics import registry, serve

    if once:
        from prometheus_client import generate_latest

        click.echo(generate_latest(registry()).decode(), nl=False)
        return
    click.echo(f"serving Prometheus metrics on http://{address}:{port}/metrics")
    serve(address, port)


@cli.command("workers")
@click.option("--all", "include_gone", is_flag=True, help="Also workers that stopped or have not been seen lately.")
@click.option("--json", "as_json", is_flag=True)
def workers_command(include_gone: bool, as_json: bool) -> None:
    """The workers that registered: host, queues, device (GPU and memory), versions, last seen."""
    from bertq.cli.render import age, table
    from bertq.db.engine import sessions
    from bertq.db.workers import list_workers

    with sessions()() as session:
        rows = list_workers(session, include_gone=include_gone)
    if as_json:
        emit_json(
            [
                {
                    **{k: v for k, v in vars(w).items() if not k.endswith("_at") and k != "last_seen"},
                    "queues": list(w.queues),
                    "started_at": w.started_at.isoformat(timespec="seconds") + "Z",
                    "last_seen": w.last_seen.isoformat(timespec="seconds") + "Z",
                    "stopped_at": w.stopped_at.isoformat(timespec="seconds") + "Z" if w.stopped_at else None,
                }
                for w in rows
            ]
        )
        return
    if not rows:
        click.echo("no live workers; start one with `bertq worker` (GPU machines: `bertq worker --queues gpu`)")
        return
    click.echo(
        table(
            [
                [
                    w.name,
                    ",".join(w.queues),
                    w.device
                    + (f" ({w.gpu_name}, {w.gpu_memory_mb / 1024:.0f} GiB)" if w.gpu_name and w.gpu_memory_mb else ""),
                    str(w.concurrency),
                    f"bertq {w.bertq_version}, torch {w.torch_version or '-'}",
                    age(w.last_seen) + " ago" + ("" if w.live else " (gone)"),
                ]
                for w in rows
            ],
            ["NAME", "QUEUES", "DEVICE", "SLOTS", "VERSIONS", "LAST SEEN"],
        )
    )


@cli.command()
@click.option("--interval", type=float, default=5.0, show_default=True, help="Seconds between rounds.")
@click.option("--once", is_flag=True, help="Run one round and exit.")
@click.option(
    "--reconcile-every",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds between scans of the broker for QUEUED jobs whose message is gone.",
)
@click.option(
    "--reconcile-older-than",
    type=float,
    default=60.0,
    show_default=True,
    help="Only resend jobs queued at least this many seconds ago.",
)
def beat(interval: float, once: bool, reconcile_every: float, reconcile_older_than: float) -> None:
    """Periodic duties (run one per deployment): fire due schedules, requeue jobs whose worker was lost."""
    import logging

    from bertq.cli.schedule import submit_here
    from bertq.scheduler.beat import run_beat

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    click.echo(f"bertq beat: every {interval:g}s, schedules and leases; lost messages every {reconcile_every:g}s")
    done = run_beat(
        load_settings(),
        interval=interval,
        reconcile_every=reconcile_every,
        reconcile_older_than=reconcile_older_than,
        once=once,
        submitter=submit_here,
    )
    click.echo(done.describe())


@cli.command("reconcile")
@click.option(
    "--older-than", type=float, default=60.0, show_default=True, help="Only jobs queued at least this many seconds ago."
)
def reconcile_command(older_than: float) -> None:
    """Send again the QUEUED jobs whose message the broker lost (also done by `bertq beat`)."""
    from bertq.scheduler.reaper import reconcile

    resent = reconcile(load_settings(), older_than=older_than)
    click.echo(f"sent again: {resent}" if resent else "every queued job has its message in the broker")


@cli.command()
@click.option("--task", default=None, help="Only evaluations of this task (sst2, conll2003, ...).")
@click.option("--data", default=None, help="Only evaluations on this data file.")
@click.option(
    "--scenarios",
    "scenarios_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file of [[scenario]] tables [bertq's defaults].",
)
@click.option(
    "--prices",
    "prices_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML [prices] table of USD per device-hour, for the cost columns [example prices: edit a copy of "
    "report/default_prices.toml].",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "markdown", "html", "json"]), default="table", show_default=True
)
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None, help="Write to this file instead of the terminal."
)
def report(
    task: str | None, data: str | None, scenarios_file: str | None, prices_file: str | None, fmt: str, out: str | None
) -> None:
    """Which model to deploy for which scenario, from the numbers evaluate jobs measured."""
    from pathlib import Path

    from bertq.db.engine import sessions
    from bertq.report.candidates import load_candidates, load_sweeps
    from bertq.report.costs import load_prices
    from bertq.report.render import RENDERERS, as_html
    from bertq.report.scenarios import decide, load_scenarios

    scenarios = load_scenarios(Path(scenarios_file) if scenarios_file else None)
    with sessions()() as session:
        candidates = load_candidates(
            session, task=task, data=data, prices=load_prices(Path(prices_file) if prices_file else None)
        )
        sweeps = load_sweeps(session, task=task)
    if not candidates:
        raise BertqError(
            "no successful evaluate jobs to compare"
            + (f" for task {task}" if task else "")
            + "; run `bertq submit evaluate --model JOB_ID` first"
        )
    decisions = [decision for scenario in scenarios for decision in decide(scenario, candidates)]
    text = as_html(decisions, candidates, sweeps) if fmt == "html" else RENDERERS[fmt](decisions, candidates)
    if out:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"report written to {out} ({len(decisions)} scenario decisions, {len(candidates)} candidates)")
    else:
        click.echo(text)


@cli.command()
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=5555, show_default=True)
@click.option("--unauthenticated", is_flag=True, help="No login (allowed only on 127.0.0.1).")
def flower(address: str, port: int, unauthenticated: bool) -> None:
    """Start Flower against the configured broker, behind basic auth (BERTQ_FLOWER_USER/PASSWORD)."""
    from bertq.broker import broker_url

    user = os.environ.get("BERTQ_FLOWER_USER")
    password = os.environ.get("BERTQ_FLOWER_PASSWORD")
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bertq.worker.celery_app:app",
        "flower",
        f"--address={address}",
        f"--port={port}",
    ]
    if user and password:
        # Through the environment, not argv: a command line is readable by every user of the machine (ps).
        os.environ["FLOWER_BASIC_AUTH"] = f"{user}:{password}"
    elif not unauthenticated:
        raise BertqError(
            "Flower would be open to anyone: set BERTQ_FLOWER_USER and BERTQ_FLOWER_PASSWORD "
            "(or pass --unauthenticated to listen on 127.0.0.1 without a login)"
        )
    elif address not in ("127.0.0.1", "localhost", "::1"):
        raise BertqError(
            f"--unauthenticated listens on 127.0.0.1 only, not {address}; set BERTQ_FLOWER_USER/PASSWORD to open it wider"
        )
    else:
        os.environ["FLOWER_UNAUTHENTICATED_API"] = "true"  # loopback only, by the user's explicit choice
    broker_url(load_settings())  # the embedded Redis must be up before Flower connects
    os.execv(sys.executable, argv)


@cli.command()
@click.option("--epochs", type=float, default=2.0, show_default=True)
def demo(epochs: float) -> None:
    """Run the whole path once on this machine: Redis, a worker, a real fine-tune of `minilm`."""
    from bertq.cli.demo import run_demo

    sys.exit(run_demo(epochs=epochs, echo=click.echo))


@cli.command()
def models() -> None:
    """List the model aliases; any hub id or local folder works too."""
    from bertq.models import known_models

    for alias, target, where in known_models():
        click.echo(f"{alias:<12} {target}\n{'':<12} {where}")


@cli.group("cache")
def cache_group() -> None:
    """The result cache of bulk inference (`submit infer --cache`)."""


@cache_group.command("stats")
@click.option("--json", "as_json", is_flag=True)
def cache_stats(as_json: bool) -> None:
    """Per model key: files, cached results and bytes."""
    from bertq.config import load_settings
    from bertq.result_cache import cache_root, stats

    settings = load_settings()
    rows = stats(settings)
    keys: dict[str, dict[str, int]] = {}
    for row in rows:
        totals = keys.setdefault(row["key"], {"files": 0, "entries": 0, "bytes": 0})
        totals["files"] += 1
        totals["entries"] += row["entries"]
        totals["bytes"] += row["bytes"]
    if as_json:
        emit_json({"root": cache_root(settings), "keys": keys})
        return
    click.echo(f"result cache at {cache_root(settings)}: {len(keys)} model key(s)")
    for name, totals in sorted(keys.items()):
        click.echo(
            f"  {name}  {totals['entries']} results in {totals['files']} file(s), {totals['bytes'] / 1e6:.2f} MB"
        )


@cache_group.command("prune")
@click.option("--key", "keys", multiple=True, help="A model key to remove (bertq cache stats lists them).")
@click.option("--all", "everything", is_flag=True, help="Remove every cached result.")
def cache_prune(keys: tuple[str, ...], everything: bool) -> None:
    """Remove cached results: of the given model keys, or all of them."""
    import shutil

    from bertq import store
    from bertq.config import load_settings
    from bertq.result_cache import cache_root

    if not keys and not everything:
        raise click.UsageError("name the keys to remove with --key (see `bertq cache stats`), or pass --all")
    root = cache_root(load_settings())
    for key in keys or [""]:
        target = store.join(root, key) if store.is_url(root) else str(Path(root, key))
        if store.is_url(target):
            fs, path = store.filesystem(target)
            if fs.exists(path):
                fs.rm(path, recursive=True)
        else:
            shutil.rmtree(target, ignore_errors=True)
        click.echo(f"removed {target}")
