"""The kinds of job, listed once. Everything that differs by kind is derived from this table:

- the Celery task of each kind (`bertq.<kind>`, `worker/tasks.py`) and the function a worker runs
  (`worker/runner.py`), named here as "module:function" so this table imports no torch;
- the spec dataclass that stores, checks and documents a job's fields, and from it the path
  fields the safety checks verify (`safety.py`);
- which kinds `bertq submit` and schedules accept, the choices of `bertq jobs --kind`;
- what the `jobs` table shows in its MODEL column.

Adding a job kind: its spec and builder (torch-free), its worker function (`worker/jobs/<kind>.py`),
and one row here. Standard library only, plus the spec modules (also torch-free).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bertq.bulk import InferSpec
from bertq.distillation import DistillSpec
from bertq.errors import SpecError
from bertq.pretraining import PretrainSpec
from bertq.specs import EvaluateSpec, FinetuneSpec, path_fields
from bertq.sweeps import SweepSpec


def _model(spec: dict[str, Any]) -> str | None:
    return str(spec["model"]) if spec.get("model") else None


def _models(spec: dict[str, Any]) -> str | None:
    return ",".join(spec["models"]) if spec.get("models") else None


def _teacher_to_student(spec: dict[str, Any]) -> str | None:
    if not spec.get("teacher"):
        return None  # a pipeline row before its spec is filled in
    layers = f"[{','.join(map(str, spec['student_layers']))}]" if spec.get("student_layers") else ""
    return f"{spec['teacher']}->{spec['student']}{layers}"


@dataclass(frozen=True)
class JobKind:
    name: str
    spec: type
    """The spec dataclass: its fields, defaults and docstrings are the single source."""
    run: str
    """The worker function, "module:function", called as `function(spec_values, ctx)`."""
    submittable: bool
    """Users (and schedules) create it with `bertq submit <name>`; else it is a pipeline's step."""
    summary: str
    model_column: Callable[[dict[str, Any]], str | None] = _model
    """What `bertq jobs` shows as the job's model."""
    data_parallel: bool = False
    """Trains a model: with `gpus` > 1 in its spec it runs as that many DDP processes (`worker/data_parallel.py`)."""


_WORKER = "bertq.worker.jobs"
KINDS: tuple[JobKind, ...] = (
    JobKind(
        "finetune",
        FinetuneSpec,
        f"{_WORKER}.finetune:run_finetune",
        True,
        "fine-tune a model on a task; saves the best epoch",
        data_parallel=True,
    ),
    JobKind(
        "pretrain",
        PretrainSpec,
        f"{_WORKER}.pretrain:run_pretrain",
        True,
        "continue masked-LM pre-training on unlabelled domain text; perplexity before and after",
        data_parallel=True,
    ),
    JobKind(
        "sweep",
        SweepSpec,
        f"{_WORKER}.sweep:run_sweep",
        True,
        "a sweep's row: fine-tune trials over settings and seeds; ends with mean ± std per setting",
        _models,
    ),
    JobKind(
        "compare",
        SweepSpec,
        f"{_WORKER}.sweep:run_sweep",
        True,
        "a comparison's row: models fine-tuned and evaluated alike; ends with mean ± std per model",
        _models,
    ),
    JobKind(
        "evaluate",
        EvaluateSpec,
        f"{_WORKER}.evaluate:run_evaluate",
        True,
        "task metrics, size, memory, latency and throughput of a trained model",
    ),
    JobKind(
        "distill",
        DistillSpec,
        f"{_WORKER}.distill:run_distill",
        True,
        "a distillation pipeline's row; ends with the teacher/student summary",
        _teacher_to_student,
    ),
    JobKind(
        "teacher_outputs",
        DistillSpec,
        f"{_WORKER}.distill:run_teacher_outputs",
        False,
        "distillation step: the teacher's logits, computed once",
        _teacher_to_student,
    ),
    JobKind(
        "student",
        DistillSpec,
        f"{_WORKER}.distill:run_student",
        False,
        "distillation step: train the student on gold and soft labels",
        _teacher_to_student,
        data_parallel=True,
    ),
    JobKind(
        "infer",
        InferSpec,
        f"{_WORKER}.infer:run_infer",
        True,
        "bulk inference over corpora; ends by checking and listing every shard's output",
    ),
    JobKind(
        "infer_plan",
        InferSpec,
        f"{_WORKER}.infer:run_infer_plan",
        False,
        "bulk inference step: read the inputs, check every record, plan the shards",
    ),
    JobKind(
        "infer_shard",
        InferSpec,
        f"{_WORKER}.infer:run_infer_shard",
        False,
        "bulk inference step: one shard of the input, written exactly once",
    ),
)
JOB_KINDS: dict[str, JobKind] = {kind.name: kind for kind in KINDS}
SUBMITTABLE: tuple[str, ...] = tuple(kind.name for kind in KINDS if kind.submittable)


def job_kind(name: str) -> JobKind:
    if name not in JOB_KINDS:
        raise SpecError([f"unknown job kind {name!r}; the kinds are {', '.join(JOB_KINDS)}"])
    return JOB_KINDS[name]


def all_path_fields() -> dict[str, str]:
    """Every spec field of every kind that names a path, with its role (model, data, shard, output).

    The safety check looks at all of them whatever the job's kind: a forged row may carry fields
    of another kind, and a path is checked before anything else reads the spec."""
    roles: dict[str, str] = {}
    for kind in KINDS:
        roles.update(path_fields(kind.spec))
    return roles


def model_of(kind: str, spec: dict[str, Any]) -> str | None:
    """The MODEL column of `bertq jobs` for a job of `kind`."""
    return JOB_KINDS[kind].model_column(spec) if kind in JOB_KINDS else _model(spec)
