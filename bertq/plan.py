"""A submit's plan: the jobs it creates, how they depend on each other, and their queue options.

Pure data, no database: the builders of pipelines (distill, bulk inference) return plans, and
`bertq.db.submit.submit_plan` records and dispatches them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bertq.errors import SpecError

QUEUE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def queue_for_device(device: str) -> str:
    """The default queue of a job that runs on `device`: BERTQ_DEFAULT_QUEUE, else gpu or cpu."""
    configured = os.environ.get("BERTQ_DEFAULT_QUEUE", "auto")
    return configured if configured != "auto" else ("gpu" if device == "cuda" else "cpu")


def check_queue_options(queue: str, priority: int) -> None:
    problems = []
    if not queue or not set(queue) <= QUEUE_NAME_CHARS:
        problems.append(f"--queue {queue!r}: use lower-case letters, digits, '-', '_' or '.' (e.g. gpu, cpu)")
    if not 0 <= priority <= 9:
        problems.append(f"--priority must be 0 (lowest) to 9 (most urgent), got {priority}")
    if problems:
        raise SpecError(problems)


@dataclass
class PlannedJob:
    kind: str
    spec: dict[str, Any] | Callable[[list[int]], dict[str, Any]]
    """The spec, or a function of the ids given to the plan's jobs (in plan order)."""
    queue: str
    priority: int = 5
    after: list[int] = field(default_factory=list)
    """Indices of jobs in the plan that must succeed first (a pipeline's parent waits for its steps)."""
    after_existing: list[int] = field(default_factory=list)
    """Ids of jobs already in the database that must succeed first."""
    parent: int | None = None
    """Index of the plan's job that this one is a step of."""
    parent_id: int | None = None
    """Id of a job already in the database that this one is a step of (steps a running job adds)."""
