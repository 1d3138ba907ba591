"""The tasks bertq trains and evaluates: three families, their presets, and which model heads fit.

Standard library only: the CLI uses this to check a submit before anything is enqueued.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bertq.models import ModelRef

FAMILIES = ("classification", "ner", "qa")
DEFAULT_TOKEN_BUDGET = {"cpu": 2048, "cuda": 65536}
"""Bulk inference tokens per batch: small batches suit a CPU's caches; a GPU wants tens of thousands."""

HEAD_SUFFIXES = {
    "classification": "ForSequenceClassification",
    "ner": "ForTokenClassification",
    "qa": "ForQuestionAnswering",
}
FAMILY_WORDS = {"classification": "sequence classification", "ner": "token classification (NER)", "qa": "question answering"}

MAIN_METRIC = {"classification": "accuracy", "ner": "entity_f1", "qa": "f1"}
"""What picks the best epoch and what the decision report ranks by."""


@dataclass(frozen=True)
class Task:
    name: str
    family: str
    text_column: str | None = None
    label_column: str | None = None
    label_names: dict[str, str] = field(default_factory=dict)
    max_length: int | None = None
    """A preset's default --max-length (QA needs room for question and context)."""


TASKS: dict[str, Task] = {
    "classification": Task("classification", "classification", None, "label"),
    "sst2": Task("sst2", "classification", "sentence", "label", {"0": "negative", "1": "positive"}),
    "ner": Task("ner", "ner"),
    "conll2003": Task("conll2003", "ner"),
    "qa": Task("qa", "qa", max_length=384),
    "squad": Task("squad", "qa", max_length=384),
}


def head_family(ref: ModelRef) -> str | None:
    """The task family of the head the checkpoint carries, or None for a bare encoder / LM."""
    for architecture in ref.config.get("architectures") or []:
        for family, suffix in HEAD_SUFFIXES.items():
            if architecture.endswith(suffix):
                return family
    return None


def head_problem(ref: ModelRef, family: str, *, need_trained_head: bool) -> str | None:
    """Why this model cannot be used for `family`, or None when it can.

    Fine-tuning accepts a bare encoder (a new head is added) or a checkpoint with a head of the same
    family; evaluating needs a trained head of the family, since a new head would be random."""
    carried = head_family(ref)
    architectures = ", ".join(ref.config.get("architectures") or ["none listed"])
    if carried is not None and carried != family:
        return (
            f"model {ref.name!r} is a {FAMILY_WORDS[carried]} checkpoint ({architectures}); a {FAMILY_WORDS[family]} "
            f"task needs a bare encoder or a {HEAD_SUFFIXES[family]} checkpoint"
        )
    if need_trained_head and carried != family:
        return (
            f"model {ref.name!r} has no trained {FAMILY_WORDS[family]} head ({architectures}); fine-tune it first "
            "(`bertq submit finetune`) and evaluate that job's id"
        )
    return None
