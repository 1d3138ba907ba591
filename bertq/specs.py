"""Job specifications: typed, documented, validated before anything is enqueued.

A builder takes what the user typed, collects *every* problem (each with its fix) into one
SpecError, and returns the resolved spec: defaults filled in, paths absolute, labels read from the
data. That resolved spec is what is stored on the job row and written beside its checkpoint.
Standard library only: the CLI builds specs without torch.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from bertq import datafiles, hubdata, store
from bertq.errors import BertqError, SpecError, did_you_mean
from bertq.families import PRESETS, DataCheck, Family, Preset, head_problem
from bertq.labels import match_labels, parse_label_map
from bertq.models import ModelRef, resolve_model

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
DEVICES = ("auto", "cpu", "cuda")
SPLITS = ("article",)


def path_fields(spec_class: type) -> dict[str, str]:
    """Field name -> path role, for a spec dataclass. A spec field naming a path the job touches
    says so in its metadata, `field(metadata={"path": ROLE})`: ROLE is model (a folder or hub id),
    data (a file, or a list of files), shard (a dict with a `path`) or output (a folder it writes
    into). The safety checks find every such field here, so declaring the field is enough."""
    return {f.name: f.metadata["path"] for f in fields(spec_class) if "path" in f.metadata}


@functools.cache
def field_docs(spec_class: type) -> dict[str, str]:
    """Each field's docstring (the string literal under it), read from the class's source: the help
    text `bertq submit --help` shows comes from the same place as the field itself."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(spec_class.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def default_of(spec_class: type, name: str) -> Any:
    """A field's default, as the dataclass declares it."""
    for item in fields(spec_class):
        if item.name == name:
            return item.default
    raise KeyError(f"{spec_class.__name__} has no field {name!r}")


class _Spec:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Any:
        """The spec from its stored form. Unknown keys are refused (a renamed field, or an edited
        row), never silently dropped: the fields that link pipeline steps are typed fields."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise SpecError(
                [
                    f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; the spec was stored by "
                    f"another bertq version or edited by hand (known: {', '.join(sorted(known))})"
                ]
            )
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class TrainingKnobs(_Spec):
    """The training knobs (`KNOBS`), shared by every spec that trains: fine-tune, distillation
    student, pre-training. Keyword-only, so each spec's own fields keep their order."""

    warmup_ratio: float = 0.06
    """Share of the optimiser steps over which the learning rate warms up from 0 [the model's recipe]."""
    weight_decay: float = 0.01
    """AdamW's decoupled weight decay [the model's recipe]."""
    grad_accum: int = 1
    """Batches accumulated per optimiser step (the optimiser sees batch-size x grad-accum examples)."""
    precision: str = "auto"
    """auto (bf16 on GPUs that have it, fp16 with loss scaling on older ones, fp32 on a CPU), fp32,
    bf16 (a GPU from Ampere on, or a CPU), or fp16 (a GPU)."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this global norm."""
    metric_for_best: str | None = None
    """The eval metric that picks the best epoch [the task's main metric]."""
    early_stopping: int = 0
    """Stop after this many evaluations without improvement of metric-for-best; 0: never."""


DEFAULT_TASK = "sst2"
"""With no --task, the tutorial's first task: SST-2 (from the Hub: nyu-mll/glue, config sst2)."""


@dataclass(frozen=True)
class FinetuneSpec(TrainingKnobs):
    model: str
    """The model as the user named it: an alias, a hub id or a folder."""
    model_location: str = field(metadata={"path": "model"})
    """What it resolved to: an absolute folder, or a hub id."""
    task: str
    """The task or preset: classification, sst2, ner, conll2003, qa, squad."""
    family: str
    """classification, ner or qa: decides the head, the data format and the metric."""
    train: str = field(metadata={"path": "data"})
    """Training data: an absolute path (TSV/CSV/JSONL; CoNLL or JSONL for ner; SQuAD JSON/JSONL for
    qa) or `hub:NAME[:SPLIT]` for classification."""
    eval: str = field(metadata={"path": "data"})
    """Evaluation data, in the same forms; evaluated after every epoch. May be the training file when
    `split_by` is set: then each side keeps its part."""
    text_column: str = "text"
    """Classification: the column holding the input text."""
    label_column: str = "label"
    """Classification: the column holding the class label."""
    text_pair_column: str | None = None
    """Classification of sentence pairs (NLI, paraphrase, QNLI): the column with the second text."""
    labels: list[str] | None = None
    """Label values in class-id order (classification: class i is labels[i]; ner: the IOB2 tags)."""
    label_names: list[str] | None = None
    """Human names of the classes in class-id order, saved in the model's config."""
    epochs: float = 3.0
    """Passes over the training data (ignored when max_steps is set)."""
    max_steps: int | None = None
    """Stop after this many optimiser steps (overrides epochs)."""
    batch_size: int = 32
    """Examples per optimiser step."""
    lr: float = 5e-5
    """Peak learning rate of AdamW with linear warm-up and decay."""
    gpus: int = 1
    """Data-parallel processes (torch.distributed DDP), one GPU each, on one worker that sees that many
    GPUs; the batch is shared out (batch-size / gpus each). On a CPU-only worker: that many CPU
    processes (gloo)."""
    max_length: int = 128
    """Longer inputs are truncated (qa: split into windows) at this many tokens; batches are padded
    only to their longest input."""
    stride: int = 128
    """qa: tokens shared by consecutive windows of a long context."""
    max_answer_length: int = 30
    """qa: the longest answer span, in tokens, that post-processing considers."""
    split_by: str | None = None
    """`article`: train and eval are two parts of one file, split by article title."""
    eval_fraction: float | None = None
    """With split_by: the share of articles held out for evaluation."""
    seed: int = 42
    """Seed for the split, shuffling and the new head's initialisation."""
    train_limit: int | None = None
    """Train on at most this many training examples, a sample drawn with `seed` (a learning curve's
    point, or a few-labels trial); None: all of them."""
    evaluate: bool = True
    """Enqueue an evaluate job of the best checkpoint on the eval data when the fine-tune succeeds."""
    trust_remote_code: bool = False
    """Let the model run its own Python code (`auto_map` in its config); off unless asked for."""
    allow_pickle: bool = False
    """Load pickle weights (pytorch_model.bin) when a folder has no safetensors; off unless asked for."""


@dataclass(frozen=True)
class EvaluateSpec(_Spec):
    model: str
    """The model as given: an alias, hub id, folder, or a finished job's id."""
    model_location: str | None = field(metadata={"path": "model"})
    """The folder or hub id to load; None while it waits for `model_job_id` to finish."""
    model_job_id: int | None
    """The fine-tune or distill job whose checkpoint is evaluated, if the model was a job id."""
    task: str
    family: str
    data: str = field(metadata={"path": "data"})
    """The evaluation data (absolute path)."""
    text_column: str = "text"
    label_column: str = "label"
    text_pair_column: str | None = None
    """Sentence pairs: the column with the second text (as the model was trained)."""
    labels: list[str] | None = None
    """Label values in class-id order, when known at submit (from the job that trained the model)."""
    precision: str = "fp32"
    """fp32, fp16, bf16 (weights in bf16; fp16 on a CPU under autocast) or int8 (dynamic quantisation of
    the Linear layers, CPU)."""
    device: str = "auto"
    """auto (the device of the worker that claims the job: cuda when it has a GPU; cpu for int8), cpu or
    cuda: where the model is served and measured."""
    max_length: int = 128
    stride: int = 128
    max_answer_length: int = 30
    batch_size: int = 64
    """Batch size of the throughput measurement and of the task-metric pass."""
    latency_samples: int = 200
    """Real inputs timed one by one for the p50/p95 latency (after 10 warm-up calls)."""
    split_by: str | None = None
    eval_fraction: float | None = None
    seed: int = 42
    trust_remote_code: bool = False
    """Let the model run its own Python code (`auto_map` in its config); off unless asked for."""
    allow_pickle: bool = False
    """Load pickle weights (pytorch_model.bin) when a folder has no safetensors; off unless asked for."""


# ---------------------------------------------------------------------------------------------


TRAINING_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
KNOBS = (
    "warmup_ratio",
    "weight_decay",
    "grad_accum",
    "precision",
    "max_grad_norm",
    "metric_for_best",
    "early_stopping",
)
"""The training knobs of a fine-tune or a distillation student; None (not given) takes the default."""


def training_knobs(
    given: dict[str, Any], config: dict[str, Any], metrics: tuple[str, ...], problems: list[str]
) -> dict[str, Any]:
    """The knobs as stored: given values checked, and warm-up and decay not given from the model's
    recipe (its architecture's published fine-tuning settings, `bertq.recipes`)."""
    from bertq.recipes import recipe_for

    unknown = set(given) - set(KNOBS)
    if unknown:
        raise ValueError(f"unknown training knobs {sorted(unknown)}")
    recipe = recipe_for(config.get("model_type"))
    knobs = {name: value for name, value in given.items() if value is not None}
    knobs.setdefault("warmup_ratio", recipe.warmup_ratio)
    knobs.setdefault("weight_decay", recipe.weight_decay)
    _check_numbers(problems, **{k: v for k, v in knobs.items() if k not in ("precision", "metric_for_best")})
    if knobs.get("precision", "auto") not in TRAINING_PRECISIONS:
        problems.append(f"--precision {knobs['precision']!r}: choose {', '.join(TRAINING_PRECISIONS)}")
    metric = knobs.get("metric_for_best")
    if metric is not None and metric.removeprefix("eval_") not in metrics:
        problems.append(f"--metric-for-best {metric!r}: this task reports {', '.join(metrics)}")
    elif metric is not None:
        knobs["metric_for_best"] = metric.removeprefix("eval_")
    return knobs


def _check_numbers(problems: list[str], **values: float | int | None) -> None:
    rules = {
        "epochs": (lambda v: v > 0, "--epochs must be more than 0"),
        "max_steps": (lambda v: v > 0, "--max-steps must be a positive number of steps"),
        "batch_size": (lambda v: v > 0, "--batch-size must be at least 1"),
        "lr": (lambda v: v > 0, "--lr must be more than 0; 2e-5 to 1e-4 suits most fine-tunes"),
        "max_length": (lambda v: v > 0, "--max-length must be at least 1 token"),
        "stride": (lambda v: v >= 0, "--stride must be 0 or more tokens"),
        "latency_samples": (lambda v: v > 0, "--latency-samples must be at least 1"),
        "gpus": (lambda v: 1 <= v <= 64, "--gpus must be 1 to 64 processes"),
        "warmup_ratio": (lambda v: 0 <= v < 1, "--warmup-ratio must be at least 0 and below 1 (0.06 is usual)"),
        "weight_decay": (lambda v: 0 <= v < 1, "--weight-decay must be at least 0 and below 1 (0.01 is usual)"),
        "grad_accum": (lambda v: v >= 1, "--grad-accum must be at least 1 batch per step"),
        "max_grad_norm": (lambda v: v > 0, "--max-grad-norm must be more than 0 (1.0 is usual)"),
        "early_stopping": (lambda v: v >= 0, "--early-stopping must be 0 (off) or a number of evaluations"),
    }
    for name, value in values.items():
        if value is not None and not rules[name][0](value):
            problems.append(f"{rules[name][1]} (got {value})")
    gpus, batch_size = values.get("gpus") or 1, values.get("batch_size") or 1
    if gpus > 1 and batch_size % gpus:
        problems.append(
            f"--batch-size {batch_size} does not split evenly over --gpus {gpus}: use a multiple of {gpus} "
            f"(e.g. {gpus * max(1, batch_size // gpus)}); each process takes batch-size / gpus examples a step"
        )


def _resolve(
    model: str,
    task: Preset,
    max_length: int,
    problems: list[str],
    *,
    need_trained_head: bool,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> ModelRef | None:
    try:
        ref = resolve_model(model)
    except BertqError as error:
        problems.append(str(error))
        return None
    if ref.max_length is not None and max_length > ref.max_length:
        problems.append(
            f"--max-length {max_length} is longer than {model!r} accepts ({ref.max_length} tokens); "
            f"use --max-length {ref.max_length} or less"
        )
    head = head_problem(ref, task.family, need_trained_head=need_trained_head)
    problems.extend([head] if head else [])
    problems.extend(ref.loading_problems(trust_remote_code=trust_remote_code, allow_pickle=allow_pickle))
    return ref


def _task(name: str) -> Preset:
    if name not in PRESETS:
        raise SpecError(
            [f"unknown task {name!r}{did_you_mean(name, list(PRESETS))}; choose one of: {', '.join(PRESETS)}"]
        )
    return PRESETS[name]


def _check_split(split_by: str | None, eval_fraction: float | None, problems: list[str], family: Family) -> None:
    if split_by is None:
        if eval_fraction is not None:
            problems.append("--eval-fraction needs --split-by (e.g. --split-by article)")
        return
    if split_by not in SPLITS:
        problems.append(f"--split-by {split_by!r}: the only split is 'article'")
    if not family.article_split:
        problems.append("--split-by article applies to qa data (SQuAD articles); give --eval for other tasks")
    if eval_fraction is None or not 0 < eval_fraction < 1:
        problems.append(f"--eval-fraction must be between 0 and 1 with --split-by (got {eval_fraction})")


def _check_data(
    name: str,
    option: str,
    task: Preset,
    problems: list[str],
    *,
    text_column: str | None,
    label_column: str,
    pair_column: str | None = None,
) -> tuple[DataCheck | None, str | None]:
    """Read and check one data file (or a Hub dataset's local copy) for the task, as the worker will
    read it; returns it and the text column it uses."""
    family = task.family
    label_names = None
    if hubdata.is_hub(name) or datafiles.is_hub_dataset(name):
        try:
            copy = hubdata.local_copy(name, hubdata.default_root())
        except hubdata.HubDataError as error:
            problems.append(f"{option}: {error}")
            return None, text_column
        path, shown = copy.path, str(copy.source)
        label_names = copy.label_names.get(label_column)
    elif store.is_url(name):
        try:
            path, shown = store.local_path(name), name
        except store.StoreError as error:
            problems.append(f"{option}: {error}")
            return None, text_column
    else:
        path = Path(name).expanduser()
        shown = str(path.resolve())
        if not path.is_file():
            problems.append(f"{option}: no file {name!r}; give a {family.data_kinds}")
            return None, text_column
    found: list[str] = []
    data, text_column = family.check_data(
        path,
        name=name,
        option=option,
        problems=found,
        text_column=text_column,
        label_column=label_column,
        pair_column=pair_column,
    )
    problems.extend(problem.replace(str(path), shown) for problem in found)
    if data is None:
        return None, text_column
    return DataCheck(path=shown, data=data, label_names=label_names), text_column


def _labels_from(train: DataCheck, task: Preset, problems: list[str]) -> list[str] | None:
    try:
        return task.family.labels_from(Path(train.path), train.data)
    except datafiles.DataFileError as error:
        problems.append(f"--train: {error}")
    return None


def _check_eval_labels(
    evaluation: DataCheck, task: Preset, labels: list[str], option: str, problems: list[str]
) -> None:
    if evaluation.data is not None:
        task.family.check_eval_labels(Path(evaluation.path), evaluation.data, labels, option, problems)


def build_finetune_spec(
    *,
    model: str,
    task: str | None,
    train: str | None,
    eval: str | None,
    text_column: str | None = None,
    label_column: str | None = None,
    text_pair_column: str | None = None,
    epochs: float = FinetuneSpec.epochs,
    max_steps: int | None = None,
    batch_size: int = FinetuneSpec.batch_size,
    lr: float = FinetuneSpec.lr,
    max_length: int | None = None,
    stride: int = FinetuneSpec.stride,
    split_by: str | None = None,
    eval_fraction: float | None = None,
    seed: int = FinetuneSpec.seed,
    evaluate: bool = True,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    gpus: int = 1,
    knobs: dict[str, Any] | None = None,
) -> FinetuneSpec:
    task = task or DEFAULT_TASK
    preset = _task(task)
    problems: list[str] = []
    if train is None and preset.train is None:
        raise SpecError([f"--train is missing: give training data ({preset.family.data_kinds})"])
    train = train or preset.train or ""
    if eval is None and split_by is None and train == preset.train:
        eval = preset.eval  # the preset's own data: its evaluation split
    max_length = max_length or preset.max_length
    _check_numbers(
        problems,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        max_length=max_length,
        stride=stride,
        gpus=gpus,
    )
    if preset.family.windows and stride >= max_length:
        problems.append(f"--stride {stride} must be smaller than --max-length {max_length}")
    _check_split(split_by, eval_fraction, problems, preset.family)
    if eval is None and split_by is None:
        problems.append("--eval is missing: give evaluation data, or --split-by article --eval-fraction F for qa")
    ref = _resolve(
        model,
        preset,
        max_length,
        problems,
        need_trained_head=False,
        trust_remote_code=trust_remote_code,
        allow_pickle=allow_pickle,
    )

    label_column = label_column or preset.label_column or "label"
    text_column = text_column or preset.text_column
    pair_column = text_pair_column or preset.text_pair_column
    train_check, text_column = _check_data(
        train, "--train", preset, problems, text_column=text_column, label_column=label_column, pair_column=pair_column
    )
    eval_check = train_check
    if eval is not None and (
        split_by is None or Path(eval).expanduser().resolve() != Path(train).expanduser().resolve()
    ):
        eval_check, text_column = _check_data(
            eval,
            "--eval",
            preset,
            problems,
            text_column=text_column,
            label_column=label_column,
            pair_column=pair_column,
        )
    if split_by and train_check is not None and preset.family.article_split:
        try:
            preset.family.check_split(train_check.data, eval_fraction=eval_fraction or 0.2, seed=seed)
        except ValueError as error:
            problems.append(f"--split-by article: {error}")

    labels = _labels_from(train_check, preset, problems) if train_check else None
    if labels and eval_check is not None and eval_check is not train_check:
        _check_eval_labels(eval_check, preset, labels, "--eval", problems)

    knobs = training_knobs(knobs or {}, ref.config if ref else {}, preset.family.metrics, problems)
    if problems:
        raise SpecError(problems)
    assert ref is not None and train_check is not None and eval_check is not None
    names = preset.label_names or (train_check.label_names or {})
    return FinetuneSpec(
        model=model,
        model_location=ref.location,
        task=task,
        family=preset.family.name,
        train=train_check.path,
        eval=eval_check.path,
        text_column=text_column or "text",
        label_column=label_column,
        text_pair_column=pair_column,
        labels=labels,
        label_names=[names.get(label, label) for label in labels] if labels else None,
        epochs=float(epochs),
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        max_length=max_length,
        stride=stride,
        split_by=split_by,
        eval_fraction=eval_fraction,
        seed=seed,
        evaluate=evaluate,
        trust_remote_code=trust_remote_code,
        allow_pickle=allow_pickle,
        gpus=gpus,
        **knobs,
    )


def build_evaluate_spec(
    *,
    model: str,
    task: str | None,
    data: str | None,
    source_job: dict[str, Any] | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    precision: str = EvaluateSpec.precision,
    device: str = EvaluateSpec.device,
    max_length: int | None = None,
    batch_size: int = EvaluateSpec.batch_size,
    latency_samples: int = EvaluateSpec.latency_samples,
    split_by: str | None = None,
    eval_fraction: float | None = None,
    seed: int = EvaluateSpec.seed,
    label_map: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    text_pair_column: str | None = None,
) -> EvaluateSpec:
    """`source_job`, when the model is a job id: that job's kind, status, spec and checkpoint."""
    problems: list[str] = []
    trained: dict[str, Any] = (source_job or {}).get("spec") or {}
    task = task or trained.get("task")
    if task is None:
        raise SpecError([f"--task is missing ({', '.join(PRESETS)})"])
    preset = _task(task)
    if trained and PRESETS.get(trained.get("task", ""), preset).family is not preset.family:
        problems.append(
            f"job {(source_job or {}).get('id')} trained a {trained.get('family')} model; it cannot be evaluated as {task}"
        )
    max_length = max_length or trained.get("max_length") or preset.max_length
    _check_numbers(problems, batch_size=batch_size, max_length=max_length, latency_samples=latency_samples)
    if precision not in PRECISIONS:
        problems.append(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if device not in DEVICES:
        problems.append(f"--device {device!r}: choose auto, cpu or cuda")
    if precision == "int8" and device == "cuda":
        problems.append("--precision int8 is dynamic quantisation for the CPU; use --device cpu (or bf16/fp16 on cuda)")
    if split_by is None and trained.get("split_by") and data is None:
        split_by, eval_fraction, seed = trained["split_by"], trained["eval_fraction"], trained["seed"]
    _check_split(split_by, eval_fraction, problems, preset.family)

    location: str | None = None
    job_id: int | None = None
    ref: ModelRef | None = None
    if source_job is not None:
        job_id = int(source_job["id"])
        if source_job["kind"] not in ("finetune", "student"):
            problems.append(
                f"job {job_id} is a {source_job['kind']} job; evaluate a finetune or student job's id "
                "(a distill pipeline's student is in its `summary.student_job`)"
            )
        elif source_job["status"] in ("FAILED", "CANCELLED"):
            problems.append(
                f"job {job_id} {source_job['status'].lower()}, so it has no model to evaluate; resubmit it first"
            )
        location = source_job.get("checkpoint")
        if location:
            _resolve(
                location,
                preset,
                max_length,
                problems,
                need_trained_head=True,
                trust_remote_code=trust_remote_code,
                allow_pickle=allow_pickle,
            )
    else:
        ref = _resolve(
            model,
            preset,
            max_length,
            problems,
            need_trained_head=True,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle,
        )
        location = ref.location if ref else None

    data = data or trained.get("eval") or preset.eval
    text_column = text_column or trained.get("text_column") or preset.text_column
    label_column = label_column or trained.get("label_column") or preset.label_column or "label"
    pair_column = text_pair_column or trained.get("text_pair_column") or preset.text_pair_column
    checked = None
    if data is None:
        problems.append("--data is missing: the evaluation data file")
    else:
        checked, text_column = _check_data(
            data,
            "--data",
            preset,
            problems,
            text_column=text_column,
            label_column=label_column,
            pair_column=pair_column,
        )
    labels = trained.get("labels")
    mapping = parse_label_map(label_map, problems)
    if not labels and ref is not None and checked is not None and preset.family.named_classes:
        labels = _model_labels(ref, checked, preset, mapping, problems)
    if checked is not None and labels:
        _check_eval_labels(checked, preset, labels, "--data", problems)

    if problems:
        raise SpecError(problems)
    assert checked is not None
    return EvaluateSpec(
        model=model,
        model_location=location,
        model_job_id=job_id,
        task=task,
        family=preset.family.name,
        data=checked.path,
        text_column=text_column or "text",
        label_column=label_column,
        text_pair_column=pair_column,
        labels=labels,
        precision=precision,
        device=device,
        max_length=max_length,
        # A folder carries no stride: the windows overlap by a quarter, as bulk inference's do.
        stride=trained.get("stride", min(FinetuneSpec.stride, max_length // 4)),
        max_answer_length=trained.get("max_answer_length", 30),
        batch_size=batch_size,
        latency_samples=latency_samples,
        split_by=split_by,
        eval_fraction=eval_fraction,
        seed=seed,
        trust_remote_code=trust_remote_code,
        allow_pickle=allow_pickle,
    )


def _model_labels(
    ref: ModelRef, checked: DataCheck, preset: Preset, mapping: dict[str, str] | None, problems: list[str]
) -> list[str] | None:
    """A model trained elsewhere: the data label each of its classes predicts (`bertq.labels`)."""
    id2label = ref.config.get("id2label") or {}
    names = [str(id2label[key]) for key in sorted(id2label, key=int)]
    try:
        data_labels = preset.family.labels_from(Path(checked.path), checked.data)
    except datafiles.DataFileError:
        return None
    if not names or not data_labels:
        return None
    data_names = checked.label_names or preset.label_names
    matched, problem = match_labels(
        names, data_labels, data_names=data_names, label_map=mapping, who=f"model {ref.name!r}"
    )
    if problem:
        problems.append(problem)
    return matched


def evaluate_after_finetune(spec: FinetuneSpec, *, job_id: int, device: str) -> EvaluateSpec:
    """The evaluate job a fine-tune enqueues for its best checkpoint, on its own eval data."""
    return EvaluateSpec(
        model=f"job:{job_id}",
        model_location=None,
        model_job_id=job_id,
        task=spec.task,
        family=spec.family,
        data=spec.eval,
        text_column=spec.text_column,
        label_column=spec.label_column,
        text_pair_column=spec.text_pair_column,
        labels=spec.labels,
        precision="fp32",
        device=device,
        max_length=spec.max_length,
        stride=spec.stride,
        max_answer_length=spec.max_answer_length,
        split_by=spec.split_by,
        eval_fraction=spec.eval_fraction,
        seed=spec.seed,
        trust_remote_code=spec.trust_remote_code,
        allow_pickle=spec.allow_pickle,
    )
