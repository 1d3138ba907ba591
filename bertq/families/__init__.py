"""The registry of task families and their presets: the one place a family is listed.

Each family is one module here (its torch-free facts and submit-time checks) and one module of the
same name in `bertq.worker.families` (model head, features, scoring). Adding a family means adding
both modules and naming the first in `_MODULES` below (the worker side follows this list); everything else (spec checks, head checks, the
report's ranking metric, the worker's jobs) asks the family object. Standard library only.
"""

from __future__ import annotations

from bertq.errors import BertqError
from bertq.families import classification, ner, qa, regression
from bertq.families.family import DataCheck, Family
from bertq.families.preset import Preset
from bertq.models import ModelRef

_MODULES = (classification, regression, ner, qa)

FAMILIES: dict[str, Family] = {module.FAMILY.name: module.FAMILY for module in _MODULES}
"""Every task family by name, in the order users see them listed."""

PRESETS: dict[str, Preset] = {preset.name: preset for module in _MODULES for preset in module.PRESETS}
"""Every `--task` preset by name: each family's own presets, families in registry order."""

__all__ = [
    "FAMILIES",
    "PRESETS",
    "DataCheck",
    "Family",
    "Preset",
    "get_family",
    "head_family",
    "head_problem",
    "presets_help",
]


def presets_help() -> str:
    """`--task` help: every preset, with the Hub dataset it trains on by default."""
    parts = [
        f"{p.name} ({p.train.removeprefix('hub:').rsplit(':', 1)[0]})" if p.train else p.name for p in PRESETS.values()
    ]
    return ", ".join(parts)


def get_family(name: str) -> Family:
    """The family called `name` (a spec's `family` field); a stored spec naming an unknown family
    is refused with the choices rather than failing later in the worker."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise BertqError(f"unknown task family {name!r}; choose one of: {', '.join(FAMILIES)}") from None


def head_family(ref: ModelRef) -> Family | None:
    """The task family of the head the checkpoint carries, or None for a bare encoder / LM."""
    for architecture in ref.config.get("architectures") or []:
        for family in FAMILIES.values():
            if architecture.endswith(family.head_suffix) and family.carries(ref.config):
                return family
    return None


def head_problem(ref: ModelRef, family: Family, *, need_trained_head: bool) -> str | None:
    """Why this model cannot be used for `family`, or None when it can.

    Fine-tuning accepts a bare encoder (a new head is added) or a checkpoint with a head of the same
    family; evaluating needs a trained head of the family, since a new head would be random."""
    carried = head_family(ref)
    architectures = ", ".join(ref.config.get("architectures") or ["none listed"])
    if carried is not None and carried is not family:
        return (
            f"model {ref.name!r} is a {carried.words} checkpoint ({architectures}); a {family.words} "
            f"task needs a bare encoder or a {family.head_suffix} checkpoint"
        )
    if need_trained_head and carried is not family:
        return (
            f"model {ref.name!r} has no trained {family.words} head ({architectures}); fine-tune it first "
            "(`bertq submit finetune`) and evaluate that job's id"
        )
    return None
