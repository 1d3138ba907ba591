"""The worker half of the task families, one module each, registered from `_MODULES`.

`worker_family(name)` is what jobs, loading and prediction ask for a spec's family: its model head,
data collator, examples, labels, training features and evaluation set. The torch-free half (data
checks, metrics, words) is `bertq.families`; both list the same families.
"""

from __future__ import annotations

import random

from bertq.families import get_family
from bertq.worker.families import classification, ner, qa
from bertq.worker.families.family import EvalSet, WorkerFamily

_MODULES = (classification, ner, qa)

WORKER_FAMILIES: dict[str, WorkerFamily] = {module.FAMILY.name: module.FAMILY for module in _MODULES}
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
