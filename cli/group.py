"""The `bertq` click group, its error handling, and what every command group shares."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from bertq.errors import BertqError


class BertqGroup(click.Group):
    """Turns bertq's own errors into a clear message and exit status 2, and a database that cannot be
    reached into one with exit status 3, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BertqError as error:
            message = str(error)
            if "\n" in message:
                message = "the request has problems; nothing was enqueued:\n" + message
            click.echo(f"error: {message}", err=True)
            sys.exit(2)
        except Exception as error:
            if type(error).__name__ != "OperationalError" or not type(error).__module__.startswith("sqlalchemy"):
                raise
            from bertq.config import load_settings, mask_password

            cause = str(getattr(error, "orig", error)).strip().splitlines()[0]
            click.echo(
                f"error: the database {mask_password(load_settings().database_url)} cannot be used: {cause}. "
                "Start it (or wait for it to come back), or point BERTQ_DATABASE_URL at one that runs; "
                "this command did not run.",
                err=True,
            )
            sys.exit(3)


@click.group(cls=BertqGroup)
@click.version_option(package_name="bertq")
def cli() -> None:
    """bertq: fine-tune, distill, evaluate and run BERT-family encoders as queued jobs."""


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def get_job(session: Any, job_id: int) -> Any:
    from bertq.db.models import Job

    job = session.get(Job, job_id)
    if job is None:
        raise BertqError(f"no job {job_id}; `bertq jobs` lists the jobs there are")
    return job
