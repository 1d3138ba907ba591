"""`bertq schedule ...`: cron schedules that submit jobs (fired by `bertq beat`)."""

from __future__ import annotations

import os

import click

from bertq.cli.group import BertqError, cli, emit_json
from bertq.config import load_settings


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
    from bertq.cli.render import table
    from bertq.db import schedules as schedule_queries
    from bertq.db.engine import sessions

    with sessions()() as session:
        rows = []
        for item in schedule_queries.enabled(session=session):
            last = schedule_queries.last_fire(session=session, schedule_id=item.id)
            rows.append(
                {
                    "name": item.name,
                    "cron": item.cron,
                    "timezone": item.timezone,
                    "command": item.argv["args"],
                    "folder": item.argv.get("cwd"),
                    "last_slot": last.slot.isoformat() + "Z" if last else None,
                    "last_job": last.job_id if last else None,
                    "last_error": last.error if last else None,
                }
            )
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no schedules; add one with `bertq schedule add NAME --cron ... -- submit ...`")
        return
    click.echo(
        table(
            [
                [
                    r["name"],
                    r["cron"],
                    r["timezone"],
                    r["last_slot"] or "-",
                    str(r["last_job"] or "-"),
                    " ".join(r["command"])[:60],
                ]
                for r in rows
            ],
            ["NAME", "CRON", "TZ", "LAST SLOT", "LAST JOB", "COMMAND"],
        )
    )


@schedule.command("remove")
@click.argument("name")
def schedule_remove(name: str) -> None:
    """Remove schedule NAME (its fired slots stay in the history)."""
    from bertq.db import schedules as schedule_queries
    from bertq.db.engine import sessions

    with sessions()() as session, session.begin():
        if not schedule_queries.remove(session=session, name=name):
            raise BertqError(f"no schedule named {name!r}; `bertq schedule list` shows them")
    click.echo(f"schedule {name} removed")


@schedule.command("run-now")
@click.argument("name")
def schedule_run_now(name: str) -> None:
    """Fire schedule NAME once, now."""
    from bertq.scheduler.schedules import run_now

    fired = run_now(load_settings(), name, submit_here)
    if fired.error:
        raise BertqError(f"schedule {name}: the submit failed: {fired.error}")
    click.echo(f"schedule {name} fired: job {fired.job_id}")


def submit_here(args: list[str], env: dict[str, str], cwd: str | None) -> tuple[int | None, str | None]:
    """A schedule's `bertq submit ...` run in this process (the beat's, or `schedule run-now`'s), with
    its environment and from its folder, both restored after: a firing costs no second Python start-up."""
    import contextlib
    import io
    import json

    from bertq.cli.group import cli

    saved_env = {name: os.environ.get(name) for name in env}
    saved_cwd = os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    code: object = 0
    try:
        os.environ.update(env)
        if cwd:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(args=list(args), prog_name="bertq", standalone_mode=False)
            except click.ClickException as error:
                error.show()
                code = error.exit_code
            except SystemExit as stop:
                code = stop.code
    finally:
        os.chdir(saved_cwd)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    if code in (0, None):
        try:
            return int(json.loads(out.getvalue())["id"]), None
        except (ValueError, KeyError):
            pass
    return None, (err.getvalue() or out.getvalue()).strip()[-2000:] or f"exit status {code}"
