"""The `bertq` command line. Thin: each command parses options and calls a plain function.

Nothing on this path imports torch or transformers (a test enforces it), and the heavier libraries
(SQLAlchemy, Celery) are imported inside the commands that need them, so `bertq --help` is instant.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click

from bertq.config import load_settings
from bertq.jobkinds import JOB_KINDS
from bertq.tasks import DEFAULT_TOKEN_BUDGET
from bertq.errors import BertqError


class BertqGroup(click.Group):
    """Turns bertq's own errors into a clear message and exit status 2, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BertqError as error:
            message = str(error)
            if "\n" in message:
                message = "the request has problems; nothing was enqueued:\n" + message
            click.echo(f"error: {message}", err=True)
            sys.exit(2)


@click.group(cls=BertqGroup)
@click.version_option(package_name="bertq")
def cli() -> None:
    """bertq: fine-tune, distill, evaluate and run BERT-family encoders as queued jobs."""


def main() -> None:
    cli(prog_name="bertq")


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


# ---------------------------------------------------------------------------------------------
# Configuration and services


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def config(as_json: bool) -> None:
    """Show the configuration (from BERTQ_* environment variables), passwords masked."""
    values = load_settings().public_dict()
    if as_json:
        _emit_json(values)
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
        click.echo(f"redis: embedded, 127.0.0.1:{state['port']} (pid {state['pid']}, password in {settings.home}/redis)")
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
def worker(queues: str, concurrency: int, pool: str, name: str | None, loglevel: str) -> None:
    """Start a Celery worker that runs bertq jobs (replaces this process)."""
    from bertq.broker import broker_url
    from bertq.db.engine import sessions

    settings = load_settings()
    broker_url(settings)  # start the embedded Redis before Celery tries to connect
    sessions(settings)  # migrate once here, not in every child
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    node = name or f"bertq-{queues.replace(',', '-')}-{os.getpid()}@%h"
    argv = [
        sys.executable, "-m", "celery", "-A", "bertq.worker.celery_app:app", "worker",
        "-Q", queues, "-c", str(concurrency), "--pool", pool, "-n", node, "-E", "--loglevel", loglevel,
    ]
    os.execv(sys.executable, argv)


@cli.command()
@click.option("--interval", type=float, default=5.0, show_default=True, help="Seconds between rounds.")
@click.option("--once", is_flag=True, help="Run one round and exit.")
@click.option("--reconcile-every", type=float, default=30.0, show_default=True,
              help="Seconds between scans of the broker for QUEUED jobs whose message is gone.")
@click.option("--reconcile-older-than", type=float, default=60.0, show_default=True,
              help="Only resend jobs queued at least this many seconds ago.")
def beat(interval: float, once: bool, reconcile_every: float, reconcile_older_than: float) -> None:
    """Periodic duties (run one per deployment): fire due schedules, requeue jobs whose worker was lost."""
    import logging

    from bertq.scheduler.reaper import reap_expired_leases, reconcile
    from bertq.scheduler.schedules import fire_due

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    click.echo(f"bertq beat: every {interval:g}s, schedules and leases; lost messages every {reconcile_every:g}s")
    next_reconcile = time.monotonic()
    resent: list[int] = []
    while True:
        try:
            requeued = reap_expired_leases(settings)
            fired = fire_due(settings)
            if time.monotonic() >= next_reconcile:  # a scan of the broker: not every round
                resent = reconcile(settings, older_than=reconcile_older_than)
                next_reconcile = time.monotonic() + reconcile_every
        except Exception as error:  # noqa: BLE001 - the database or Redis away: try again next round
            if once:
                raise
            logging.getLogger("bertq.beat").warning("round skipped: %s", str(error).splitlines()[0])
        else:
            if once:
                click.echo(f"requeued: {requeued}; resent: {resent}; fired: {[(f.schedule, f.job_id, f.error) for f in fired]}")
                return
        time.sleep(interval)


@cli.command("reconcile")
@click.option("--older-than", type=float, default=60.0, show_default=True, help="Only jobs queued at least this many seconds ago.")
def reconcile_command(older_than: float) -> None:
    """Send again the QUEUED jobs whose message the broker lost (also done by `bertq beat`)."""
    from bertq.scheduler.reaper import reconcile

    resent = reconcile(load_settings(), older_than=older_than)
    click.echo(f"sent again: {resent}" if resent else "every queued job has its message in the broker")


@cli.group()
def schedule() -> None:
    """Cron schedules that submit jobs (fired by `bertq beat`)."""


@schedule.command("add", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.option("--cron", required=True, help='Five cron fields, e.g. "0 2 * * *" (02:00 every night).')
@click.option("--timezone", default="UTC", show_default=True)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def schedule_add(name: str, cron: str, timezone: str, command: tuple[str, ...]) -> None:
    """Add schedule NAME: `bertq schedule add NAME --cron "0 2 * * *" -- submit infer ...`."""
    from bertq.db.engine import sessions
    from bertq.scheduler.schedules import add_schedule

    with sessions()() as session, session.begin():
        added = add_schedule(session=session, name=name, cron=cron, timezone=timezone, args=list(command))
        click.echo(f"schedule {added.name} added: {cron} ({timezone}) -> bertq {' '.join(command)}")


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True)
def schedule_list(as_json: bool) -> None:
    """Schedules and their last fired slot."""
    from sqlalchemy import select

    from bertq.cli.render import table
    from bertq.db.engine import sessions
    from bertq.db.models import Schedule, ScheduleFire

    with sessions()() as session:
        rows = []
        for item in session.scalars(select(Schedule).where(Schedule.enabled.is_(True)).order_by(Schedule.name)):
            last = session.scalars(
                select(ScheduleFire).where(ScheduleFire.schedule_id == item.id).order_by(ScheduleFire.slot.desc()).limit(1)
            ).first()
            rows.append({"name": item.name, "cron": item.cron, "timezone": item.timezone, "command": item.argv["args"],
                         "folder": item.argv.get("cwd"),
                         "last_slot": last.slot.isoformat() + "Z" if last else None,
                         "last_job": last.job_id if last else None, "last_error": last.error if last else None})
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        click.echo("no schedules; add one with `bertq schedule add NAME --cron ... -- submit ...`")
        return
    click.echo(table([[r["name"], r["cron"], r["timezone"], r["last_slot"] or "-", str(r["last_job"] or "-"),
                       " ".join(r["command"])[:60]] for r in rows],
                     ["NAME", "CRON", "TZ", "LAST SLOT", "LAST JOB", "COMMAND"]))


@schedule.command("remove")
@click.argument("name")
def schedule_remove(name: str) -> None:
    """Remove schedule NAME (its fired slots stay in the history)."""
    from sqlalchemy import select

    from bertq.db.engine import sessions
    from bertq.db.models import Schedule

    with sessions()() as session, session.begin():
        item = session.scalar(select(Schedule).where(Schedule.name == name))
        if item is None:
            raise BertqError(f"no schedule named {name!r}; `bertq schedule list` shows them")
        item.enabled = False
        item.name = f"{item.name}.removed-{item.id}"
    click.echo(f"schedule {name} removed")


@schedule.command("run-now")
@click.argument("name")
def schedule_run_now(name: str) -> None:
    """Fire schedule NAME once, now."""
    from bertq.scheduler.schedules import run_now

    fired = run_now(load_settings(), name)
    if fired.error:
        raise BertqError(f"schedule {name}: the submit failed: {fired.error}")
    click.echo(f"schedule {name} fired: job {fired.job_id}")


@cli.command()
@click.option("--task", default=None, help="Only evaluations of this task (sst2, conll2003, ...).")
@click.option("--data", default=None, help="Only evaluations on this data file.")
@click.option("--scenarios", "scenarios_file", type=click.Path(dir_okay=False), default=None, help="TOML file of [[scenario]] tables [bertq's defaults].")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "html", "json"]), default="table", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write to this file instead of the terminal.")
def report(task: str | None, data: str | None, scenarios_file: str | None, fmt: str, out: str | None) -> None:
    """Which model to deploy for which scenario, from the numbers evaluate jobs measured."""
    from pathlib import Path

    from bertq.db.engine import sessions
    from bertq.report.candidates import load_candidates
    from bertq.report.render import RENDERERS
    from bertq.report.scenarios import decide, load_scenarios

    scenarios = load_scenarios(Path(scenarios_file) if scenarios_file else None)
    with sessions()() as session:
        candidates = load_candidates(session, task=task, data=data)
    if not candidates:
        raise BertqError("no successful evaluate jobs to compare" + (f" for task {task}" if task else "")
                         + "; run `bertq submit evaluate --model JOB_ID` first")
    decisions = [decision for scenario in scenarios for decision in decide(scenario, candidates)]
    text = RENDERERS[fmt](decisions, candidates)
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
    argv = [sys.executable, "-m", "celery", "-A", "bertq.worker.celery_app:app", "flower",
            f"--address={address}", f"--port={port}"]
    if user and password:
        argv.append(f"--basic-auth={user}:{password}")
    elif not unauthenticated:
        raise BertqError(
            "Flower would be open to anyone: set BERTQ_FLOWER_USER and BERTQ_FLOWER_PASSWORD "
            "(or pass --unauthenticated to listen on 127.0.0.1 without a login)"
        )
    elif address not in ("127.0.0.1", "localhost", "::1"):
        raise BertqError(f"--unauthenticated listens on 127.0.0.1 only, not {address}; set BERTQ_FLOWER_USER/PASSWORD to open it wider")
    else:
        os.environ["FLOWER_UNAUTHENTICATED_API"] = "true"  # loopback only, by the user's explicit choice
    broker_url(load_settings())  # the embedded Redis must be up before Flower connects
    os.execv(sys.executable, argv)


@cli.command()
@click.option("--epochs", type=float, default=2.0, show_default=True)
def demo(epochs: float) -> None:
    """Run the whole path once on this machine: Redis, a worker, a real fine-tune of `minilm`."""
    from bertq.demo import run_demo

    sys.exit(run_demo(epochs=epochs, echo=click.echo))


@cli.command()
def models() -> None:
    """List the model aliases; any hub id or local folder works too."""
    from bertq.models import known_models

    for alias, target, where in known_models():
        click.echo(f"{alias:<12} {target}\n{'':<12} {where}")


# ---------------------------------------------------------------------------------------------
# Submitting


@cli.group()
def submit() -> None:
    """Enqueue a job. Input is checked first: on any problem nothing is enqueued."""


def _queue_options(command: Any) -> Any:
    command = click.option("--json", "as_json", is_flag=True, help='Print {"id": ...} as JSON.')(command)
    command = click.option("--wait", is_flag=True, help="Show progress until the job ends; exit non-zero unless it SUCCEEDED.")(command)
    command = click.option("--priority", type=int, default=5, show_default=True, help="0 (lowest) to 9 (most urgent).")(command)
    command = click.option("--queue", default=None, help="Queue to run on: cpu or gpu [default: BERTQ_DEFAULT_QUEUE or cpu].")(command)
    return command


def _loading_options(command: Any) -> Any:
    command = click.option("--allow-pickle", is_flag=True,
                           help="Load pickle weights (pytorch_model.bin) for this job; they can run code. Off: safetensors only.")(command)
    command = click.option("--trust-remote-code", is_flag=True,
                           help="Let the model run its own Python code (auto_map) for this job. Off by default.")(command)
    return command


def _validated(queue: str, priority: int, build_spec: Any) -> Any:
    """Check the spec and the queue options together: every problem in one message."""
    from bertq.errors import SpecError
    from bertq.plan import check_queue_options

    problems: list[str] = []
    spec = None
    for check in (lambda: check_queue_options(queue, priority), build_spec):
        try:
            spec = check() or spec
        except SpecError as error:
            problems.extend(error.problems)
    if problems:
        raise SpecError(problems)
    return spec


def _report_submitted(job_id: int, kind: str, queue: str, wait: bool, as_json: bool, extra: str = "") -> None:
    if as_json:
        _emit_json({"id": job_id})
    else:
        click.echo(f"job {job_id} queued ({kind}, queue {queue}){extra}; follow it with `bertq wait {job_id}`")
    if wait:
        sys.exit(_wait_for(job_id, quiet=as_json))


def _default_queue(device: str = "cpu") -> str:
    return os.environ.get("BERTQ_DEFAULT_QUEUE") or ("gpu" if device == "cuda" else "cpu")


@submit.command("finetune")
@click.option("--model", required=True, help="Alias (bertq models), hub id or local folder.")
@click.option("--task", required=True, help="classification, sst2, ner, conll2003, qa or squad.")
@click.option("--train", required=True, help="Training data: TSV/CSV/JSONL (classification), CoNLL/JSONL (ner), SQuAD JSON/JSONL (qa).")
@click.option("--eval", "eval_", default=None, help="Evaluation data, same format; evaluated every epoch.")
@click.option("--text-column", default=None, help="Classification: column with the text [sst2: sentence; else text/sentence].")
@click.option("--label-column", default=None, help="Classification: column with the label [default: label].")
@click.option("--epochs", type=float, default=3.0, show_default=True)
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps (overrides --epochs).")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=5e-5, show_default=True)
@click.option("--max-length", type=int, default=None, help="Truncate (qa: window) inputs at this many tokens [128; qa 384].")
@click.option("--stride", type=int, default=128, show_default=True, help="qa: tokens shared by consecutive windows.")
@click.option("--split-by", type=click.Choice(["article"]), default=None, help="qa: take --train and --eval from one file, split by article.")
@click.option("--eval-fraction", type=float, default=None, help="With --split-by: share of articles held out (e.g. 0.2).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--evaluate/--no-evaluate", default=True, show_default=True, help="Enqueue an evaluate job of the best checkpoint when done.")
@_loading_options
@_queue_options
def submit_finetune(
    model: str, task: str, train: str, eval_: str | None, text_column: str | None, label_column: str | None,
    epochs: float, max_steps: int | None, batch_size: int, lr: float, max_length: int | None, stride: int,
    split_by: str | None, eval_fraction: float | None, seed: int, evaluate: bool,
    trust_remote_code: bool, allow_pickle: bool, queue: str | None, priority: int, wait: bool, as_json: bool,
) -> None:
    """Fine-tune MODEL on a task; saves the best epoch's model with its metrics, then evaluates it."""
    from bertq.specs import build_finetune_spec, evaluate_after_finetune
    from bertq.db.submit import submit_plan
    from bertq.plan import PlannedJob

    queue = queue or _default_queue()
    spec = _validated(queue, priority, lambda: build_finetune_spec(
        model=model, task=task, train=train, eval=eval_, text_column=text_column, label_column=label_column,
        epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, max_length=max_length, stride=stride,
        split_by=split_by, eval_fraction=eval_fraction, seed=seed, evaluate=evaluate,
        trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
    ))
    plan = [PlannedJob("finetune", spec.to_dict(), queue, priority)]
    if evaluate:
        device = "cuda" if queue == "gpu" else "cpu"
        plan.append(PlannedJob(
            "evaluate", lambda ids: evaluate_after_finetune(spec, job_id=ids[0], device=device).to_dict(),
            queue, priority, after=[0], parent=0,
        ))
    ids = submit_plan(plan)
    extra = f"; job {ids[1]} will evaluate its checkpoint" if evaluate else ""
    _report_submitted(ids[0], "finetune", queue, wait, as_json, extra)


def _model_job(model: str) -> dict[str, Any] | None:
    """When --model is a job id (and not a folder of that name): that job's kind, status, spec, checkpoint."""
    from pathlib import Path

    from bertq.db.engine import sessions
    from bertq.db.jobs import checkpoint_path

    reference = model.removeprefix("job:")
    if not reference.isdigit() or Path(model).exists():
        return None
    with sessions()() as session:
        job = _get_job(session, int(reference))
        return {"id": job.id, "kind": job.kind, "status": job.status, "spec": job.spec,
                "checkpoint": checkpoint_path(session=session, job_id=job.id)}


@submit.command("evaluate")
@click.option("--model", required=True, help="A finished (or running) fine-tune/distill job id, or an alias, hub id or folder with a trained head.")
@click.option("--task", default=None, help="classification, sst2, ner, conll2003, qa or squad [default: the job's task].")
@click.option("--data", default=None, help="Evaluation data [default: the job's eval data].")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16", "int8"]), default="fp32", show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--text-column", default=None)
@click.option("--label-column", default=None)
@click.option("--max-length", type=int, default=None, help="[default: the job's, else 128; qa 384]")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Batch size of the throughput pass.")
@click.option("--latency-samples", type=int, default=200, show_default=True, help="Real inputs timed one at a time.")
@click.option("--split-by", type=click.Choice(["article"]), default=None)
@click.option("--eval-fraction", type=float, default=None)
@click.option("--seed", type=int, default=42, show_default=True)
@_loading_options
@_queue_options
def submit_evaluate(
    model: str, task: str | None, data: str | None, precision: str, device: str, text_column: str | None,
    label_column: str | None, max_length: int | None, batch_size: int, latency_samples: int,
    split_by: str | None, eval_fraction: float | None, seed: int,
    trust_remote_code: bool, allow_pickle: bool, queue: str | None, priority: int, wait: bool, as_json: bool,
) -> None:
    """Measure a trained model: task metrics, size, peak memory, p50/p95 latency, throughput."""
    from bertq.db.models import JobStatus
    from bertq.specs import build_evaluate_spec
    from bertq.db.submit import submit_plan
    from bertq.plan import PlannedJob

    queue = queue or _default_queue(device)
    source = _model_job(model)
    spec = _validated(queue, priority, lambda: build_evaluate_spec(
        model=model, task=task, data=data, source_job=source, text_column=text_column, label_column=label_column,
        precision=precision, device=device, max_length=max_length, batch_size=batch_size,
        latency_samples=latency_samples, split_by=split_by, eval_fraction=eval_fraction, seed=seed,
        trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
    ))
    waits_for = [source["id"]] if source and source["status"] != JobStatus.SUCCEEDED else []
    [job_id] = submit_plan([PlannedJob("evaluate", spec.to_dict(), queue, priority, after_existing=waits_for)])
    extra = f", after job {waits_for[0]} succeeds" if waits_for else ""
    _report_submitted(job_id, "evaluate", queue, wait, as_json, extra)


@submit.command("distill")
@click.option("--teacher", required=True, help="A fine-tune job id, a fine-tuned folder, or a model to fine-tune first (alias, hub id, folder).")
@click.option("--student", required=True, help="`teacher` (cut from it with --student-layers), or an alias, hub id or folder.")
@click.option("--student-layers", default=None, help="With --student teacher: a count (6: evenly spaced) or indices (0,2,4).")
@click.option("--task", default=None, help="sst2 or classification [default: the teacher job's task].")
@click.option("--train", default=None, help="Training data [default: the teacher job's].")
@click.option("--eval", "eval_", default=None, help="Evaluation data [default: the teacher job's].")
@click.option("--text-column", default=None)
@click.option("--label-column", default=None)
@click.option("--temperature", type=float, default=4.0, show_default=True, help="Softmax temperature of the soft labels.")
@click.option("--alpha", type=float, default=0.5, show_default=True, help="Weight of the soft (KD) term; 0 trains on gold labels alone.")
@click.option("--transfer-data", default=None, help="Unlabelled text the teacher labels (soft labels only), added to the student's data.")
@click.option("--transfer-column", default=None, help="Text column of --transfer-data when it is TSV/CSV/JSONL.")
@click.option("--epochs", type=float, default=3.0, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--max-length", type=int, default=128, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@_loading_options
@_queue_options
def submit_distill(
    teacher: str, student: str, student_layers: str | None, task: str | None, train: str | None, eval_: str | None,
    text_column: str | None, label_column: str | None, temperature: float, alpha: float, transfer_data: str | None,
    transfer_column: str | None, epochs: float, batch_size: int, lr: float, max_length: int, seed: int,
    trust_remote_code: bool, allow_pickle: bool, queue: str | None, priority: int, wait: bool, as_json: bool,
) -> None:
    """Distil TEACHER into STUDENT: a pipeline of jobs (teacher, its cached outputs, student, evaluations)."""
    from bertq.distillation import build_distill_spec, plan_distill
    from bertq.db.submit import submit_plan

    queue = queue or _default_queue()
    teacher_job = _model_job(teacher)
    built = _validated(queue, priority, lambda: build_distill_spec(
        teacher=teacher, teacher_job=teacher_job, student=student, student_layers=student_layers, task=task,
        train=train, eval=eval_, text_column=text_column, label_column=label_column, temperature=temperature,
        alpha=alpha, transfer_data=transfer_data, transfer_column=transfer_column, epochs=epochs,
        batch_size=batch_size, lr=lr, max_length=max_length, seed=seed,
        trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
    ))
    spec, teacher_finetune = built
    ids = submit_plan(plan_distill(spec, teacher_finetune, queue=queue, priority=priority,
                                   device="cuda" if queue == "gpu" else "cpu"))
    _report_submitted(ids[0], "distill", queue, wait, as_json, f"; steps {', '.join(map(str, ids[1:]))}")


@submit.command("infer")
@click.option("--model", required=True, help="A fine-tune/student job id, or an alias, hub id or folder (with a trained head, except for embed).")
@click.option("--task", required=True, type=click.Choice(["classify", "ner", "embed", "zero-shot", "qa"]))
@click.option("--input", "inputs", required=True, multiple=True, help="Text (one record per line), JSONL, CSV/TSV or Parquet; files or globs; repeatable.")
@click.option("--output", required=True, help="Output folder; {date} becomes the run's date (nightly runs never overwrite each other).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet"]), default="jsonl", show_default=True)
@click.option("--text-column", default=None, help="Text column of JSONL/CSV/TSV/Parquet input [text, sentence or content].")
@click.option("--id-column", default=None, help="Column whose value is each record's id [default: <file name>:<line number>].")
@click.option("--shards", default="auto", show_default=True, help="Number of shards (each its own task on any worker), or auto.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16", "int8"]), default="auto", show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--token-budget", type=int, default=None, help=f"Tokens per batch [cpu {DEFAULT_TOKEN_BUDGET['cpu']}, cuda {DEFAULT_TOKEN_BUDGET['cuda']}]; halved on CUDA out-of-memory.")
@click.option("--max-length", type=int, default=None, help="Truncate inputs at this many tokens [the model's limit, at most 512].")
@click.option("--all-scores", is_flag=True, help="classify: every label's score.")
@click.option("--normalize", is_flag=True, help="embed: unit-length vectors.")
@click.option("--labels", default=None, help="zero-shot: candidate labels, comma-separated.")
@click.option("--question", default=None, help="qa: the question asked of every text.")
@click.option("--on-bad-line", type=click.Choice(["fail", "skip"]), default="fail", show_default=True)
@_loading_options
@_queue_options
def submit_infer(
    model: str, task: str, inputs: tuple[str, ...], output: str, fmt: str, text_column: str | None,
    id_column: str | None, shards: str, precision: str, device: str, token_budget: int | None, max_length: int | None,
    all_scores: bool, normalize: bool, labels: str | None, question: str | None, on_bad_line: str,
    trust_remote_code: bool, allow_pickle: bool, queue: str | None, priority: int, wait: bool, as_json: bool,
) -> None:
    """Run MODEL over corpora: sharded across workers, exactly one output record per input record."""
    from bertq.bulk import build_infer_spec, claim_output, plan_infer, shard_rows
    from bertq.db.models import ShardRow
    from bertq.db.submit import submit_plan

    queue = queue or _default_queue(device)
    model_job = _model_job(model)
    spec, planned = _validated(queue, priority, lambda: build_infer_spec(
        model=model, model_job=model_job, task=task, inputs=list(inputs), output=output, format=fmt,
        text_column=text_column, id_column=id_column, shards=shards, precision=precision, device=device,
        token_budget=token_budget, max_length=max_length, all_scores=all_scores, normalize=normalize,
        labels=labels, question=question, on_bad_line=on_bad_line,
        trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
    ))
    ids = submit_plan(plan_infer(spec, planned, queue=queue, priority=priority),
                      extra_rows=lambda ids: [ShardRow(**row) for row in shard_rows(ids, planned)])
    from pathlib import Path

    claim_output(Path(spec.output), ids[0])
    _report_submitted(ids[0], "infer", queue, wait, as_json,
                      f"; {spec.records} records in {len(planned)} shards -> {spec.output}")


# ---------------------------------------------------------------------------------------------
# Watching


JOB_SORTS = ("newest", "oldest", "priority", "status")


def _get_job(session: Any, job_id: int) -> Any:
    from bertq.db.models import Job

    job = session.get(Job, job_id)
    if job is None:
        raise BertqError(f"no job {job_id}; `bertq jobs` lists the jobs there are")
    return job


@cli.command()
@click.option("--status", type=click.Choice(["WAITING", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"], case_sensitive=False))
@click.option("--kind", type=click.Choice(list(JOB_KINDS)), default=None, help="Only jobs of this kind.")
@click.option("--sort", type=click.Choice(list(JOB_SORTS)), default="newest", show_default=True, help="Order of the list.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--orphans", "only_orphans", is_flag=True,
              help="Only WAITING jobs that can never run (a job they wait for failed or was cancelled).")
@click.option("--json", "as_json", is_flag=True)
def jobs(status: str | None, kind: str | None, sort: str, limit: int, only_orphans: bool, as_json: bool) -> None:
    """List jobs, newest first (or --sort oldest, priority, status)."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from bertq.cli.render import age, job_view, main_metric, table
    from bertq.jobkinds import model_of
    from bertq.db.engine import sessions
    from bertq.db.jobs import latest_metrics, orphans
    from bertq.db.models import Job

    with sessions()() as session:
        stuck = orphans(session=session)
    if only_orphans:
        if as_json:
            _emit_json([{"id": job_id, "waits_for": blocker, "which": how} for job_id, blocker, how in stuck])
        else:
            click.echo("\n".join(f"job {j} waits for job {b}, which {how}" for j, b, how in stuck) or "no orphans")
        return
    for job_id, blocker, how in stuck:  # should never happen: every path to FAILED ends the dependants
        click.echo(f"warning: job {job_id} waits for job {blocker}, which {how}; it can never run "
                   f"(`bertq cancel {job_id}`)", err=True)

    # Sort keys and kinds are fixed names mapped to columns: user text never becomes SQL.
    order = {"newest": [Job.id.desc()], "oldest": [Job.id], "priority": [Job.priority.desc(), Job.id],
             "status": [Job.status, Job.id.desc()]}[sort]
    query = select(Job).options(selectinload(Job.metrics)).order_by(*order).limit(limit)
    if status:
        query = query.where(Job.status == status.upper())
    if kind:
        query = query.where(Job.kind == kind)
    with sessions()() as session:
        rows = session.scalars(query).all()
        if as_json:
            _emit_json([{k: job_view(j)[k] for k in ("id", "kind", "status", "progress", "model", "metrics", "created_at")} for j in rows])
            return
        if not rows:
            click.echo("no jobs yet; submit one with `bertq submit finetune ...`")
            return
        click.echo(
            table(
                [
                    [str(j.id), j.kind, j.status, f"{j.progress * 100:.0f}%", model_of(j.kind, j.spec) or "-", age(j.created_at), main_metric(latest_metrics(j))]
                    for j in rows
                ],
                ["ID", "KIND", "STATUS", "PROGRESS", "MODEL", "AGE", "MAIN METRIC"],
            )
        )


@cli.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def show(job_id: int, as_json: bool) -> None:
    """One job: status, progress, metrics, artifacts, error."""
    from bertq.cli.render import job_view, progress_line
    from bertq.db.engine import sessions

    with sessions()() as session:
        view = job_view(_get_job(session, job_id))
        line = progress_line(_get_job(session, job_id))
    if as_json:
        _emit_json(view)
        return
    click.echo(line)
    click.echo(f"kind {view['kind']}, model {view['model']}, queue {view['queue']}, attempts {view['attempts']}/{view['max_attempts']}")
    for key in ("created_at", "started_at", "finished_at"):
        if view[key]:
            click.echo(f"{key.replace('_at', ''):<9} {view[key]}")
    if view["metrics"]:
        click.echo("metrics:")
        for name, value in view["metrics"].items():
            click.echo(f"  {name:<28} {value:.6g}")
    for artifact in view["artifacts"]:
        click.echo(f"artifact {artifact['kind']}: {artifact['path']} ({artifact['size_bytes'] / 1e6:.1f} MB, sha256 {artifact['sha256'][:12]})")
    if view["error"]:
        click.echo(f"error: {view['error']}")


def _wait_for(job_id: int, *, timeout: float | None = None, quiet: bool = False) -> int:
    from bertq.cli.render import progress_line
    from bertq.db.engine import sessions
    from bertq.db.models import FINISHED, JobStatus

    factory = sessions()
    deadline = time.monotonic() + timeout if timeout else None
    interactive = sys.stderr.isatty()
    last = ""
    while True:
        with factory() as session:
            job = _get_job(session, job_id)
            line = progress_line(job)
            status = JobStatus(job.status)
            error = job.error
        if not quiet and line != last:
            click.echo(("\r" + line.ljust(len(last))) if interactive else line, err=True, nl=not interactive)
            last = line
        if status in FINISHED:
            if interactive and not quiet:
                click.echo("", err=True)
            if error and not quiet:
                click.echo(f"error: {error}", err=True)
            return 0 if status == JobStatus.SUCCEEDED else 1
        if deadline and time.monotonic() > deadline:
            click.echo(f"timed out waiting for job {job_id} ({status})", err=True)
            return 3
        time.sleep(0.5)


@cli.command()
@click.argument("job_id", type=int)
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds (exit 3).")
@click.option("--quiet", is_flag=True, help="No progress output.")
def wait(job_id: int, timeout: float | None, quiet: bool) -> None:
    """Wait for a job to end; exit 0 only if it SUCCEEDED."""
    sys.exit(_wait_for(job_id, timeout=timeout, quiet=quiet))


@cli.command()
@click.argument("job_id", type=int)
def cancel(job_id: int) -> None:
    """Cancel a queued or running job (a running one stops at its next heartbeat)."""
    from bertq.db.engine import sessions
    from bertq.db.jobs import cancel as cancel_job

    with sessions()() as session, session.begin():
        job = _get_job(session, job_id)
        dependants = cancel_job(session=session, job_id=job_id)
        if dependants is None:
            raise BertqError(f"job {job_id} already ended ({job.status}); nothing to cancel")
    click.echo(f"job {job_id} cancelled" + (f"; so were the jobs waiting for it: {dependants}" if dependants else ""))


@cli.command()
@click.argument("job_id", type=int)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the job ends.")
def logs(job_id: int, follow: bool) -> None:
    """Print a job's log."""
    from bertq.db.engine import sessions
    from bertq.db.models import JobStatus

    settings = load_settings()
    path = settings.artifacts / "jobs" / str(job_id) / "job.log"
    factory = sessions(settings)
    with factory() as session:
        _get_job(session, job_id)
    position = 0
    while True:
        if path.exists():
            with open(path, encoding="utf-8", errors="replace") as handle:
                handle.seek(position)
                chunk = handle.read()
                position = handle.tell()
            click.echo(chunk, nl=False)
        if not follow:
            if not path.exists():
                click.echo(f"job {job_id} has no log yet (it has not started)", err=True)
            return
        with factory() as session:
            if JobStatus(_get_job(session, job_id).status).finished:
                return
        time.sleep(0.5)
