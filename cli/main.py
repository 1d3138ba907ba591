"""The `bertq` command line. Thin: each command parses options and calls a plain function.

One module per command group (services, schedule, submit, watch), each registering on the group in
`cli/group.py`. Nothing on this path imports torch or transformers (a test enforces it), and the
heavier libraries (SQLAlchemy, Celery) are imported inside the commands that need them, so
`bertq --help` is instant.
"""

from __future__ import annotations

from bertq.cli import schedule, services, submit, sweep, watch  # noqa: F401 - importing registers the commands
from bertq.cli.group import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli(prog_name="bertq")
