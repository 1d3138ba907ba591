"""`bertq jobs|show|wait|cancel|logs`: watching and steering jobs."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from bertq.cli.group import BertqError, cli, emit_json, get_job
from bertq.config import load_settings
from bertq.jobkinds import JOB_KINDS

# Watching


JOB_SORTS = ("newest", "oldest", "priority", "status")
"""`bertq jobs --sort` (db.jobs.JOB_SORTS maps each to columns)."""

STRANDED_CHECK_SECONDS = 5.0
"""`bertq wait` on a queued job: how often it asks whether a live worker consumes the job's queue."""


def no_live_worker(queue: str) -> str:
    """What `jobs`, `show` and `wait` say of a queued job whose queue no live worker consumes."""
    return f"no live worker consumes queue {queue!r}: start one with `bertq worker --queues {queue}`"


@cli.command()
@click.option(
    "--status",
    type=click.Choice(["WAITING", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"], case_sensitive=False),
)
@click.option("--kind", type=click.Choice(list(JOB_KINDS)), default=None, help="Only jobs of this kind.")
@click.option(
    "--sort", type=click.Choice(list(JOB_SORTS)), default="newest", show_default=True, help="Order of the list."
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option(
    "--orphans",
    "only_orphans",
    is_flag=True,
    help="Only WAITING jobs that can never run (a job they wait for failed or was cancelled).",
)
@click.option("--json", "as_json", is_flag=True)
def jobs(status: str | None, kind: str | None, sort: str, limit: int, only_orphans: bool, as_json: bool) -> None:
    """List jobs, newest first (or --sort oldest, priority, status)."""
    from bertq.cli.render import age, job_view, learned_nothing, main_metric, table
    from bertq.db.engine import sessions
    from bertq.db.jobs import latest_metrics, list_jobs, orphans
    from bertq.db.workers import live_queues
    from bertq.jobkinds import model_of

    with sessions()() as session:
        stuck = orphans(session=session)
    if only_orphans:
        if as_json:
            emit_json([{"id": job_id, "waits_for": blocker, "which": how} for job_id, blocker, how in stuck])
        else:
            click.echo("\n".join(f"job {j} waits for job {b}, which {how}" for j, b, how in stuck) or "no orphans")
        return
    for job_id, blocker, how in stuck:  # should never happen: every path to FAILED ends the dependants
        click.echo(
            f"warning: job {job_id} waits for job {blocker}, which {how}; it can never run (`bertq cancel {job_id}`)",
            err=True,
        )

    with sessions()() as session:
        rows = list_jobs(session=session, status=status.upper() if status else None, kind=kind, sort=sort, limit=limit)
        live = live_queues(session)
        unserved = {j.id: j.queue for j in rows if j.status == "QUEUED" and j.queue not in live}
        if as_json:
            emit_json(
                [
                    {k: job_view(j)[k] for k in ("id", "kind", "status", "progress", "model", "metrics", "created_at")}
                    | {"queue": j.queue, "no_live_worker": j.id in unserved}
                    for j in rows
                ]
            )
            return
        if not rows:
            click.echo("no jobs yet; submit one with `bertq submit finetune ...`")
            return
        click.echo(
            table(
                [
                    [
                        str(j.id),
                        j.kind,
                        j.status + ("*" if j.id in unserved else ""),
                        f"{j.progress * 100:.0f}%",
                        model_of(j.kind, j.spec) or "-",
                        age(j.created_at),
                        main_metric(latest_metrics(j)),
                    ]
                    for j in rows
                ],
                ["ID", "KIND", "STATUS", "PROGRESS", "MODEL", "AGE", "MAIN METRIC"],
            )
        )
        for queue in sorted(set(unserved.values())):
            click.echo(f"* {no_live_worker(queue)}")
        if any(learned_nothing(latest_metrics(j)) for j in rows):
            click.echo("! no better than always answering the most common label: `bertq show ID` says more")


@cli.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def show(job_id: int, as_json: bool) -> None:
    """One job: status, progress, metrics, artifacts, error."""
    from bertq.cli.render import job_view, progress_line
    from bertq.db.engine import sessions
    from bertq.db.workers import live_queues

    with sessions()() as session:
        view = job_view(get_job(session, job_id))
        line = progress_line(get_job(session, job_id))
        view["no_live_worker"] = view["status"] == "QUEUED" and view["queue"] not in live_queues(session)
    if as_json:
        emit_json(view)
        return
    click.echo(line)
    if view["no_live_worker"]:
        click.echo(no_live_worker(view["queue"]))
    click.echo(
        f"kind {view['kind']}, model {view['model']}, queue {view['queue']}, attempts {view['attempts']}/{view['max_attempts']}"
    )
    for key in ("created_at", "started_at", "finished_at"):
        if view[key]:
            click.echo(f"{key.replace('_at', ''):<9} {view[key]}")
    if view["metrics"]:
        click.echo("metrics:")
        for name, value in view["metrics"].items():
            click.echo(f"  {name:<28} {value:.6g}")
    for artifact in view["artifacts"]:
        click.echo(
            f"artifact {artifact['kind']}: {artifact['path']} ({artifact['size_bytes'] / 1e6:.1f} MB, sha256 {artifact['sha256'][:12]})"
        )
    if view["warning"]:
        click.echo(f"warning: {view['warning']}")
    if view["error"]:
        click.echo(f"error: {view['error']}")


def _logs_from_store(artifact_store: str, job_id: int, follow: bool, factory: Any) -> None:
    """The job's log from the artifact store, where its worker copies it (every 15 s while it runs)."""
    from bertq import store
    from bertq.db.models import JobStatus

    url = store.join(artifact_store, "jobs", str(job_id), "job.log")
    shown = 0
    while True:
        with factory() as session:
            finished = JobStatus(get_job(session, job_id).status).finished
        text = store.read_text(url) if store.exists(url) else ""
        click.echo(text[shown:], nl=False)
        shown = len(text)
        if not follow or finished:
            if not text:
                click.echo(f"job {job_id} has no log yet (it has not started)", err=True)
            return
        time.sleep(2.0)


def wait_for(job_id: int, *, timeout: float | None = None, quiet: bool = False) -> int:
    from bertq.cli.render import progress_line
    from bertq.db.engine import sessions
    from bertq.db.models import FINISHED, JobStatus
    from bertq.db.workers import live_queues

    factory = sessions()
    deadline = time.monotonic() + timeout if timeout else None
    interactive = sys.stderr.isatty()
    last = ""
    stranded = ""  # the queue no live worker consumes, once said
    checked = 0.0
    while True:
        with factory() as session:
            job = get_job(session, job_id)
            line = progress_line(job)
            status = JobStatus(job.status)
            error = job.error
            queue = job.queue
            if status != JobStatus.QUEUED:
                stranded = ""  # a worker took it (or it ended): nothing to say of its queue
            elif time.monotonic() - checked > STRANDED_CHECK_SECONDS:
                checked = time.monotonic()
                unserved = queue not in live_queues(session)
                if unserved and stranded != queue and not quiet:
                    click.echo(("\n" if interactive and last else "") + no_live_worker(queue), err=True)
                    last = ""  # the progress line again, below the message
                stranded = queue if unserved else ""
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
            reason = f"; {no_live_worker(stranded)}" if stranded else ""
            click.echo(f"timed out waiting for job {job_id} ({status}){reason}", err=True)
            return 3
        time.sleep(0.5)


@cli.command()
@click.argument("job_id", type=int)
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds (exit 3).")
@click.option("--quiet", is_flag=True, help="No progress output.")
def wait(job_id: int, timeout: float | None, quiet: bool) -> None:
    """Wait for a job to end; exit 0 only if it SUCCEEDED."""
    sys.exit(wait_for(job_id, timeout=timeout, quiet=quiet))


@cli.command()
@click.argument("job_id", type=int)
def cancel(job_id: int) -> None:
    """Cancel a queued or running job (a running one stops at its next heartbeat)."""
    from bertq.db.engine import sessions
    from bertq.db.jobs import cancel as cancel_job

    with sessions()() as session, session.begin():
        job = get_job(session, job_id)
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
        get_job(session, job_id)
    if settings.artifact_store:
        _logs_from_store(settings.artifact_store, job_id, follow, factory)
        return
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
            if JobStatus(get_job(session, job_id).status).finished:
                return
        time.sleep(0.5)
