"""The task-family and inference-task registries: each family listed once, in both halves, torch-free
where the CLI reads it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bertq.errors import BertqError
from bertq.families import FAMILIES, PRESETS, get_family, head_family
from bertq.infer_tasks import INFER_TASKS, get_infer_task
from bertq.models import ModelRef


def test_both_halves_list_the_same_families() -> None:
    from bertq.worker.families import WORKER_FAMILIES, worker_family

    assert list(WORKER_FAMILIES) == list(FAMILIES) == ["classification", "regression", "ner", "qa"]
    for name, family in FAMILIES.items():
        assert worker_family(name).family is family
    assert list(PRESETS) == [
        "classification",
        "qnli",
        "mrpc",
        "rte",
        "mnli",
        "sst2",
        "regression",
        "stsb",
        "ner",
        "conll2003",
        "qa",
        "squad",
    ]
    assert all(preset.family is FAMILIES[preset.family.name] for preset in PRESETS.values())


def test_unknown_names_are_refused_with_the_choices() -> None:
    with pytest.raises(BertqError, match="choose one of: classification, regression, ner, qa"):
        get_family("summarisation")
    with pytest.raises(BertqError, match="choose one of: classify, score, ner, embed, zero-shot, qa"):
        get_infer_task("summarise")


def test_a_checkpoint_head_is_found_by_its_architecture_suffix() -> None:
    def ref(*architectures: str) -> ModelRef:
        return ModelRef(name="m", location="/m", source="local", config={"architectures": list(architectures)})

    assert head_family(ref("BertForTokenClassification")) is FAMILIES["ner"]
    assert head_family(ref("RobertaForQuestionAnswering")) is FAMILIES["qa"]
    assert head_family(ref("BertModel")) is None
    # One head class, two families: a one-output regression head is told apart by its config.
    regression = ModelRef(name="m", location="/m", source="local",
                          config={"architectures": ["BertForSequenceClassification"], "problem_type": "regression"})  # fmt: skip
    assert head_family(regression) is FAMILIES["regression"]
    assert head_family(ref("BertForSequenceClassification")) is FAMILIES["classification"]
    assert INFER_TASKS["zero-shot"].head is FAMILIES["classification"]


def test_the_registries_import_neither_torch_nor_transformers() -> None:
    code = (
        "import sys, bertq.families, bertq.infer_tasks, bertq.specs, bertq.bulk; "
        "print(sorted(m for m in ('torch', 'transformers', 'celery') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_inference_task_has_a_predictor_method():
    """A task listed by `bertq submit infer --task` that the worker cannot answer would fail only at run time."""
    from bertq.worker.predict import PREDICT_METHODS, Predictor

    assert set(PREDICT_METHODS) == set(INFER_TASKS)
    for method in PREDICT_METHODS.values():
        assert callable(getattr(Predictor, method))
