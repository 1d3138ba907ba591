"""The worker half of the task families: one module each, named like its family.

The list of families is `bertq.families.FAMILIES`; this package imports `<name>.py` for each, so a
new family is registered once, on the torch-free side.

`worker_family(name)` is what jobs, loading and prediction ask for a spec's family: its model head,
data collator, examples, labels, training features and evaluation set. The torch-free half (data
checks, metrics, words) is `bertq.families`; both list the same families.
"""

from __future__ import annotations

import importlib
import random

from bertq.families import FAMILIES, get_family
from bertq.worker.families.family import EvalSet, WorkerFamily

WORKER_FAMILIES: dict[str, WorkerFamily] = {
    name: importlib.import_module(f"{__name__}.{name}").FAMILY for name in FAMILIES
}
"""Every family's worker half by name; the same names as `bertq.families.FAMILIES`."""

__all__ = ["WORKER_FAMILIES", "EvalSet", "WorkerFamily", "latency_sample", "worker_family"]


def worker_family(name: str) -> WorkerFamily:
    """The worker half of the family called `name`; an unknown name is refused with the choices."""
    get_family(name)  # raises, naming the choices, for a name no family has
    return WORKER_FAMILIES[name]


def latency_sample(num_examples: int, count: int, seed: int) -> list[int]:
    """Which real examples are timed one by one: a seeded sample, the same for every precision."""
    indices = list(range(num_examples))
    random.Random(seed).shuffle(indices)
    return indices[:count]
