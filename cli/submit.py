"""`bertq submit ...`: check the input, then enqueue. On any problem nothing is enqueued."""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

import click

from bertq.bulk import InferSpec
from bertq.cli.group import cli, emit_json, get_job
from bertq.cli.watch import wait_for
from bertq.distillation import DistillSpec
from bertq.families import presets_help
from bertq.formats import TEXT_COLUMN_GUESSES
from bertq.infer_tasks import INFER_TASKS
from bertq.plan import queue_for_device
from bertq.pretraining import PretrainSpec
from bertq.recipes import recipes_help
from bertq.specs import PRECISIONS, EvaluateSpec, FinetuneSpec, field_docs
from bertq.tasks import DEFAULT_TOKEN_BUDGET

# Submitting


@cli.group()
def submit() -> None:
    """Enqueue a job. Input is checked first: on any problem nothing is enqueued."""


def spec_option(spec: type, name: str, *decls: str, **options: Any) -> Any:
    """A click option for the spec field `name`: its default, and its help unless given here, come
    from the spec dataclass (the single source of each field's type, default and meaning)."""
    from bertq.specs import default_of, field_docs

    options.setdefault("default", default_of(spec, name))
    options.setdefault("show_default", True)
    options.setdefault("help", field_docs(spec).get(name))
    return click.option(*(decls or (f"--{name.replace('_', '-')}",)), **options)


def _queue_options(command: Any) -> Any:
    command = click.option("--json", "as_json", is_flag=True, help='Print {"id": ...} as JSON.')(command)
    command = click.option(
        "--wait", is_flag=True, help="Show progress until the job ends; exit non-zero unless it SUCCEEDED."
    )(command)
    command = click.option("--priority", type=int, default=5, show_default=True, help="0 (lowest) to 9 (most urgent).")(
        command
    )
    command = click.option(
        "--queue",
        default="auto",
        show_default=True,
        help="Queue to run on: cpu, gpu or another; auto: BERTQ_DEFAULT_QUEUE, else gpu when a live GPU worker "
        "serves it (bertq workers), else cpu.",
    )(command)
    return command


_device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: the device of the worker that takes the job (cuda when it has a GPU).",
)


def _loading_options(command: Any) -> Any:
    command = click.option(
        "--allow-pickle",
        is_flag=True,
        help="Load pickle weights (pytorch_model.bin) for this job; they can run code. Off: safetensors only.",
    )(command)
    command = click.option(
        "--trust-remote-code",
        is_flag=True,
        help="Let the model run its own Python code (auto_map) for this job. Off by default.",
    )(command)
    return command


def _knob_options(command: Any) -> Any:
    """The training knobs (`bertq.specs.KNOBS`), passed to the command as one `knobs` dict; a knob not
    given is None (its default: the spec's, or for warm-up and decay the model's published recipe)."""
    from bertq.specs import KNOBS, TRAINING_PRECISIONS, field_docs

    docs = field_docs(FinetuneSpec)

    @functools.wraps(command)
    def with_knobs(*args: Any, **kwargs: Any) -> Any:
        kwargs["knobs"] = {name: kwargs.pop(name) for name in KNOBS}
        return command(*args, **kwargs)

    recipe_default = {
        "warmup_ratio": f"by architecture: {recipes_help('warmup_ratio')}; else 0.06",
        "weight_decay": f"by architecture: {recipes_help('weight_decay')}; else 0.01",
        "grad_accum": "1",
        "precision": "auto",
        "max_grad_norm": "1.0",
        "metric_for_best": "the task's main metric",
        "early_stopping": "0",
    }
    types: dict[str, Any] = {
        "warmup_ratio": float,
        "weight_decay": float,
        "grad_accum": int,
        "precision": click.Choice(TRAINING_PRECISIONS),
        "max_grad_norm": float,
        "metric_for_best": str,
        "early_stopping": int,
    }
    for name in reversed(KNOBS):
        help_text = f"{docs[name].split(' [')[0]} [{recipe_default[name]}]"
        with_knobs = click.option(f"--{name.replace('_', '-')}", name, type=types[name], default=None, help=help_text)(
            with_knobs
        )
    return with_knobs


def _validated(queue: str, priority: int, build_spec: Any) -> Any:
    """Check the spec and the queue options together: every problem in one message."""
    from bertq.errors import SpecError
    from bertq.plan import check_queue_options

    problems: list[str] = []
    spec = None
    for check in (lambda: check_queue_options(queue, priority), build_spec):
        try:
            spec = check() or spec
        except SpecError as error:
            problems.extend(error.problems)
    if problems:
        raise SpecError(problems)
    return spec


def _report_submitted(job_id: int, kind: str, queue: str, wait: bool, as_json: bool, extra: str = "") -> None:
    if as_json:
        emit_json({"id": job_id})
    else:
        click.echo(f"job {job_id} queued ({kind}, queue {queue}){extra}; follow it with `bertq wait {job_id}`")
    if wait:
        sys.exit(wait_for(job_id, quiet=as_json))


HUB_DATA_HELP = (
    "Or a Hub dataset: hub:OWNER/NAME[#CONFIG][:SPLIT] (e.g. hub:nyu-mll/glue#sst2:train[:5000]), "
    "read through the Hugging Face cache (offline: HF_HUB_OFFLINE=1 with a filled cache)."
)
LABEL_MAP_HELP = (
    "How a trained head's classes map to the data's labels, e.g. NEGATIVE=0,POSITIVE=1 [default: by name, "
    "case-insensitively, or LABEL_i to i]."
)


def _pick_queue(queue: str | None, device: str = "cpu") -> str:
    """--queue as given; `auto` (the default): BERTQ_DEFAULT_QUEUE when set, gpu for --device cuda,
    else gpu when a live worker with a GPU consumes the gpu queue (the registry), otherwise cpu."""
    if queue and queue != "auto":
        _check_queue_name(queue)
        return queue
    configured = queue_for_device(device)
    if os.environ.get("BERTQ_DEFAULT_QUEUE", "auto") != "auto" or configured == "gpu":
        return configured
    from bertq.db.engine import sessions
    from bertq.db.workers import live_queues

    with sessions()() as session:
        live = live_queues(session)
    return "gpu" if "cuda" in live.get("gpu", set()) else "cpu"


def _check_queue_name(queue: str) -> None:
    """A queue no worker has ever consumed, close to one that is known, is a typo: refused with the
    name it resembles (a job there would wait forever). Any other new name is taken as it is: a worker
    may be started for it, and until then `bertq show` says that no live worker consumes it."""

    from bertq.db.engine import sessions
    from bertq.db.workers import list_workers
    from bertq.errors import SpecError, closest

    known = {"cpu", "gpu", os.environ.get("BERTQ_DEFAULT_QUEUE", "auto")} - {"auto"}
    with sessions()() as session:
        known |= {name for worker in list_workers(session, include_gone=True) for name in worker.queues}
    if queue in known:
        return
    close = closest(queue, sorted(known), cutoff=0.7)
    if close:
        raise SpecError(
            [
                f"--queue {queue!r}: no worker consumes that queue; did you mean {close!r}? (to use a new "
                f"queue, start a worker for it first: bertq worker --queues {queue})"
            ]
        )


@submit.command("finetune")
@click.option("--model", required=True, help="Alias (bertq models), hub id or local folder.")
@click.option("--task", default=None, help=f"{presets_help()} [default: sst2].")
@click.option(
    "--train",
    default=None,
    help="Training data: TSV/CSV/JSONL (classification), CoNLL/JSONL (ner), SQuAD JSON/JSONL (qa). "
    f"{HUB_DATA_HELP} [default: the task's Hub dataset, train split].",
)
@click.option(
    "--eval",
    "eval_",
    default=None,
    help="Evaluation data, same forms; evaluated every epoch. Required with your own --train (qa: or "
    "--split-by); without --train, the task's Hub validation split.",
)
@click.option(
    "--text-column", default=None, help="Classification: column with the text [sst2: sentence; else text/sentence]."
)
@click.option("--label-column", default=None, help="Classification: column with the label [default: label].")
@click.option(
    "--text-pair-column",
    default=None,
    help="Sentence pairs (NLI, paraphrase): column with the second text [qnli: sentence, mrpc/rte: sentence2, "
    "mnli: hypothesis].",
)
@spec_option(FinetuneSpec, "epochs", type=float)
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps (overrides --epochs).")
@spec_option(FinetuneSpec, "batch_size", type=int)
@spec_option(FinetuneSpec, "lr", type=float)
@spec_option(FinetuneSpec, "gpus", type=int)
@click.option(
    "--max-length", type=int, default=None, help="Truncate (qa: window) inputs at this many tokens [128; qa 384]."
)
@spec_option(FinetuneSpec, "stride", type=int)
@click.option(
    "--split-by",
    type=click.Choice(["article"]),
    default=None,
    help="qa: take --train and --eval from one file, split by article.",
)
@click.option(
    "--eval-fraction", type=float, default=None, help="With --split-by: share of articles held out (e.g. 0.2)."
)
@spec_option(FinetuneSpec, "seed", type=int)
@click.option(
    "--evaluate/--no-evaluate",
    default=True,
    show_default=True,
    help="Enqueue an evaluate job of the best checkpoint when done.",
)
@_knob_options
@_loading_options
@_queue_options
def submit_finetune(
    model: str,
    task: str | None,
    train: str | None,
    eval_: str | None,
    text_column: str | None,
    label_column: str | None,
    text_pair_column: str | None,
    epochs: float,
    max_steps: int | None,
    batch_size: int,
    lr: float,
    gpus: int,
    max_length: int | None,
    stride: int,
    split_by: str | None,
    eval_fraction: float | None,
    seed: int,
    evaluate: bool,
    trust_remote_code: bool,
    allow_pickle: bool,
    knobs: dict[str, Any],
    queue: str | None,
    priority: int,
    wait: bool,
    as_json: bool,
) -> None:
    """Fine-tune MODEL on a task; saves the best epoch's model with its metrics, then evaluates it."""
    from bertq.db.submit import submit_plan
    from bertq.plan import PlannedJob
    from bertq.specs import build_finetune_spec, evaluate_after_finetune

    queue = _pick_queue(queue)
    spec = _validated(
        queue,
        priority,
        lambda: build_finetune_spec(
            model=_trained_model(model),
            task=task,
            train=train,
            eval=eval_,
            text_column=text_column,
            label_column=label_column,
            text_pair_column=text_pair_column,
            epochs=epochs,
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
            knobs=knobs,
        ),
    )
    plan = [PlannedJob("finetune", spec.to_dict(), queue, priority)]
    if evaluate:
        device = "auto"  # measured on what the worker that takes it has
        plan.append(
            PlannedJob(
                "evaluate",
                lambda ids: evaluate_after_finetune(spec, job_id=ids[0], device=device).to_dict(),
                queue,
                priority,
                after=[0],
                parent=0,
            )
        )
    ids = submit_plan(plan)
    extra = f"; job {ids[1]} will evaluate its checkpoint" if evaluate else ""
    _report_submitted(ids[0], "finetune", queue, wait, as_json, extra)


TRAINED_MODEL_KINDS = ("pretrain", "finetune", "student")
"""Jobs whose saved checkpoint `finetune --model JOB_ID` starts from."""


def _trained_model(model: str) -> str:
    """A job id given as --model: the checkpoint that finished job saved (a pre-trained or fine-tuned
    model to train further); anything else as given."""
    from bertq.errors import SpecError

    job = _model_job(model)
    if job is None:
        return model
    if job["kind"] not in TRAINED_MODEL_KINDS:
        raise SpecError(
            [
                f"--model {model}: job {job['id']} is a {job['kind']} job; give a {', '.join(TRAINED_MODEL_KINDS)} job's id"
            ]
        )
    if job["status"] != "SUCCEEDED" or not job["checkpoint"]:
        raise SpecError(
            [
                f"--model {model}: job {job['id']} is {job['status']} and has no checkpoint yet; "
                f"wait for it (`bertq wait {job['id']}`) and submit again"
            ]
        )
    return str(job["checkpoint"])


def _model_job(model: str) -> dict[str, Any] | None:
    """When --model is a job id (and not a folder of that name): that job's kind, status, spec, checkpoint."""
    from pathlib import Path

    from bertq.db.engine import sessions
    from bertq.db.jobs import checkpoint_path

    reference = model.removeprefix("job:")
    if not reference.isdigit() or Path(model).exists():
        return None
    with sessions()() as session:
        job = get_job(session, int(reference))
        return {
            "id": job.id,
            "kind": job.kind,
            "status": job.status,
            "spec": job.spec,
            "checkpoint": checkpoint_path(session=session, job_id=job.id),
        }


@submit.command("pretrain")
@click.option(
    "--model", required=True, help="The encoder to continue: an alias (roberta, bert, minilm...), hub id or folder."
)
@click.option(
    "--corpus",
    "corpus",
    multiple=True,
    required=True,
    help="Unlabelled text: plain text (a line a text), JSONL, CSV/TSV or Parquet files or globs, "
    "store URLs or hub:NAME; repeat for more.",
)
@click.option("--text-column", default=None, help="The column with the text [guessed: text, sentence, ...].")
@spec_option(PretrainSpec, "heldout_fraction", type=float)
@spec_option(PretrainSpec, "mlm_probability", type=float)
@click.option("--whole-word", is_flag=True, help=field_docs(PretrainSpec)["whole_word"])
@spec_option(PretrainSpec, "epochs", type=float)
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps (overrides --epochs).")
@spec_option(PretrainSpec, "batch_size", type=int)
@spec_option(PretrainSpec, "lr", type=float)
@spec_option(PretrainSpec, "gpus", type=int, help=field_docs(FinetuneSpec)["gpus"])
@spec_option(PretrainSpec, "max_length", type=int)
@spec_option(PretrainSpec, "seed", type=int)
@_knob_options
@_loading_options
@_queue_options
def submit_pretrain(
    model: str,
    corpus: tuple[str, ...],
    text_column: str | None,
    heldout_fraction: float,
    mlm_probability: float,
    whole_word: bool,
    epochs: float,
    max_steps: int | None,
    batch_size: int,
    lr: float,
    gpus: int,
    max_length: int,
    seed: int,
    knobs: dict[str, Any],
    trust_remote_code: bool,
    allow_pickle: bool,
    queue: str | None,
    priority: int,
    wait: bool,
    as_json: bool,
) -> None:
    """Continue masked-LM pre-training of MODEL on unlabelled domain text (dynamic masking); records
    held-out perplexity before and after, and saves a checkpoint finetune and distill take as --model."""
    from bertq.db.submit import submit
    from bertq.pretraining import build_pretrain_spec

    queue = _pick_queue(queue)
    spec = _validated(
        queue,
        priority,
        lambda: build_pretrain_spec(
            model=model,
            corpus=list(corpus),
            text_column=text_column,
            heldout_fraction=heldout_fraction,
            mlm_probability=mlm_probability,
            whole_word=whole_word,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            max_length=max_length,
            seed=seed,
            gpus=gpus,
            knobs=knobs,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle,
        ),
    )
    job_id = submit("pretrain", spec.to_dict(), queue=queue, priority=priority)
    _report_submitted(job_id, "pretrain", queue, wait, as_json, f"; {len(spec.corpus)} corpus file(s)")


@submit.command("evaluate")
@click.option(
    "--model",
    required=True,
    help="A finished (or running) fine-tune/distill job id, or an alias, hub id or folder with a trained head.",
)
@click.option("--task", default=None, help=f"{presets_help()} [default: the job's task].")
@click.option(
    "--data",
    default=None,
    help=f"Evaluation data [default: the job's eval data, else the task's validation split]. {HUB_DATA_HELP}",
)
@click.option("--label-map", default=None, help=LABEL_MAP_HELP)
@spec_option(EvaluateSpec, "precision", type=click.Choice(list(PRECISIONS)))
@_device_option
@click.option("--text-column", default=None)
@click.option("--label-column", default=None)
@click.option("--text-pair-column", default=None, help="Sentence pairs: column with the second text [as trained].")
@click.option("--max-length", type=int, default=None, help="[default: the job's, else 128; qa 384]")
@spec_option(EvaluateSpec, "batch_size", type=int, help="Batch size of the throughput pass.")
@spec_option(EvaluateSpec, "latency_samples", type=int, help="Real inputs timed one at a time.")
@click.option("--split-by", type=click.Choice(["article"]), default=None)
@click.option("--eval-fraction", type=float, default=None)
@spec_option(EvaluateSpec, "seed", type=int)
@_loading_options
@_queue_options
def submit_evaluate(
    model: str,
    task: str | None,
    data: str | None,
    label_map: str | None,
    precision: str,
    device: str,
    text_column: str | None,
    label_column: str | None,
    text_pair_column: str | None,
    max_length: int | None,
    batch_size: int,
    latency_samples: int,
    split_by: str | None,
    eval_fraction: float | None,
    seed: int,
    trust_remote_code: bool,
    allow_pickle: bool,
    queue: str | None,
    priority: int,
    wait: bool,
    as_json: bool,
) -> None:
    """Measure a trained model: task metrics, size, peak memory, p50/p95 latency, throughput."""
    from bertq.db.models import JobStatus
    from bertq.db.submit import submit_plan
    from bertq.plan import PlannedJob
    from bertq.specs import build_evaluate_spec

    queue = _pick_queue(queue, device)
    source = _model_job(model)
    spec = _validated(
        queue,
        priority,
        lambda: build_evaluate_spec(
            model=model,
            task=task,
            data=data,
            source_job=source,
            text_column=text_column,
            label_column=label_column,
            text_pair_column=text_pair_column,
            precision=precision,
            device=device,
            max_length=max_length,
            batch_size=batch_size,
            latency_samples=latency_samples,
            split_by=split_by,
            eval_fraction=eval_fraction,
            seed=seed,
            label_map=label_map,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle,
        ),
    )
    waits_for = [source["id"]] if source and source["status"] != JobStatus.SUCCEEDED else []
    [job_id] = submit_plan([PlannedJob("evaluate", spec.to_dict(), queue, priority, after_existing=waits_for)])
    extra = f", after job {waits_for[0]} succeeds" if waits_for else ""
    _report_submitted(job_id, "evaluate", queue, wait, as_json, extra)


@submit.command("distill")
@click.option(
    "--teacher",
    required=True,
    help="A fine-tune job id, a fine-tuned folder, or a model to fine-tune first (alias, hub id, folder).",
)
@click.option(
    "--student", required=True, help="`teacher` (cut from it with --student-layers), or an alias, hub id or folder."
)
@click.option(
    "--student-layers", default=None, help="With --student teacher: a count (6: evenly spaced) or indices (0,2,4)."
)
@click.option(
    "--task",
    default=None,
    help="sst2, classification, conll2003 or ner [default: the teacher job's task, else sst2].",
)
@click.option(
    "--train", default=None, help=f"Training data [default: the teacher job's, else the task's]. {HUB_DATA_HELP}"
)
@click.option("--eval", "eval_", default=None, help="Evaluation data [default: the teacher job's, else the task's].")
@click.option(
    "--teacher-lr",
    type=float,
    default=None,
    help=f"Learning rate of the teacher's own fine-tune [by architecture, from its published recipe: {recipes_help()}; else 2e-05].",
)
@click.option("--teacher-epochs", type=float, default=None, help="Epochs of the teacher's fine-tune [3].")
@click.option("--teacher-batch-size", type=int, default=None, help="Batch size of the teacher's fine-tune [32].")
@click.option("--label-map", default=None, help=LABEL_MAP_HELP)
@click.option("--text-column", default=None)
@click.option("--label-column", default=None)
@spec_option(DistillSpec, "temperature", type=float, help="Softmax temperature of the soft labels.")
@spec_option(DistillSpec, "alpha", type=float, help="Weight of the soft (KD) term; 0 trains on gold labels alone.")
@click.option(
    "--transfer-data",
    default=None,
    help="Unlabelled text the teacher labels (soft labels only), added to the student's data.",
)
@click.option("--transfer-column", default=None, help="Text column of --transfer-data when it is TSV/CSV/JSONL.")
@spec_option(DistillSpec, "hidden_weight", "--hidden-loss-weight", type=float)
@spec_option(DistillSpec, "attention_weight", "--attention-loss-weight", type=float)
@click.option("--layer-map", default=None, help=field_docs(DistillSpec)["layer_map"])
@spec_option(DistillSpec, "epochs", type=float)
@spec_option(DistillSpec, "batch_size", type=int)
@spec_option(DistillSpec, "gpus", type=int)
@spec_option(DistillSpec, "lr", type=float)
@spec_option(DistillSpec, "max_length", type=int)
@spec_option(DistillSpec, "seed", type=int)
@_knob_options
@_loading_options
@_queue_options
def submit_distill(
    teacher: str,
    student: str,
    student_layers: str | None,
    task: str | None,
    train: str | None,
    eval_: str | None,
    teacher_lr: float | None,
    teacher_epochs: float | None,
    teacher_batch_size: int | None,
    label_map: str | None,
    text_column: str | None,
    label_column: str | None,
    temperature: float,
    alpha: float,
    transfer_data: str | None,
    transfer_column: str | None,
    hidden_loss_weight: float,
    attention_loss_weight: float,
    layer_map: str | None,
    epochs: float,
    batch_size: int,
    gpus: int,
    lr: float,
    max_length: int,
    seed: int,
    trust_remote_code: bool,
    allow_pickle: bool,
    knobs: dict[str, Any],
    queue: str | None,
    priority: int,
    wait: bool,
    as_json: bool,
) -> None:
    """Distil TEACHER into STUDENT: a pipeline of jobs (teacher, its cached outputs, student, evaluations)."""
    from bertq.db.submit import submit_plan
    from bertq.distillation import build_distill_spec, plan_distill

    queue = _pick_queue(queue)
    teacher_job = _model_job(teacher)
    built = _validated(
        queue,
        priority,
        lambda: build_distill_spec(
            teacher=teacher,
            teacher_job=teacher_job,
            student=student,
            student_layers=student_layers,
            task=task,
            train=train,
            eval=eval_,
            text_column=text_column,
            label_column=label_column,
            temperature=temperature,
            alpha=alpha,
            transfer_data=transfer_data,
            transfer_column=transfer_column,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            max_length=max_length,
            seed=seed,
            teacher_lr=teacher_lr,
            teacher_epochs=teacher_epochs,
            teacher_batch_size=teacher_batch_size,
            label_map=label_map,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle,
            gpus=gpus,
            knobs=knobs,
            hidden_weight=hidden_loss_weight,
            attention_weight=attention_loss_weight,
            layer_map=layer_map,
        ),
    )
    spec, teacher_finetune = built
    ids = submit_plan(plan_distill(spec, teacher_finetune, queue=queue, priority=priority, device="auto"))
    _report_submitted(ids[0], "distill", queue, wait, as_json, f"; steps {', '.join(map(str, ids[1:]))}")


@submit.command("infer")
@click.option(
    "--model",
    required=True,
    help="A fine-tune/student job id, or an alias, hub id or folder (with a trained head, except for embed).",
)
@click.option("--task", required=True, type=click.Choice(list(INFER_TASKS)))
@click.option(
    "--input",
    "inputs",
    required=True,
    multiple=True,
    help="Text (one record per line), JSONL, CSV/TSV or Parquet; files or globs; or a Hub dataset "
    "hub:OWNER/NAME[#CONFIG][:SPLIT] (read through the Hugging Face cache); repeatable.",
)
@click.option(
    "--output",
    required=True,
    help="Output folder; {date} becomes the run's date (nightly runs never overwrite each other).",
)
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet"]), default="jsonl", show_default=True)
@click.option(
    "--text-column",
    default=None,
    help=f"Text column of JSONL/CSV/TSV/Parquet input [the first of {', '.join(TEXT_COLUMN_GUESSES)}].",
)
@click.option(
    "--id-column", default=None, help="Column whose value is each record's id [default: <file name>:<line number>]."
)
@click.option(
    "--shards", default="auto", show_default=True, help="Number of shards (each its own task on any worker), or auto."
)
@click.option(
    "--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16", "int8"]), default="auto", show_default=True
)
@_device_option
@click.option(
    "--token-budget",
    type=int,
    default=None,
    help=f"Tokens per batch [cpu {DEFAULT_TOKEN_BUDGET['cpu']}, cuda {DEFAULT_TOKEN_BUDGET['cuda']}]; halved on CUDA out-of-memory.",
)
@click.option(
    "--max-length", type=int, default=None, help="Truncate inputs at this many tokens [the model's limit, at most 512]."
)
@click.option("--all-scores", is_flag=True, help="classify: every label's score.")
@click.option("--normalize", is_flag=True, help="embed: unit-length vectors.")
@click.option("--labels", default=None, help="zero-shot: candidate labels, comma-separated.")
@click.option("--question", default=None, help="qa: the question asked of every text.")
@click.option("--question-column", default=None, help="qa: the column holding each record's own question.")
@click.option(
    "--text-pair-column",
    default=None,
    help="classify, score: the column of each record's second text (NLI, paraphrase, similarity pairs).",
)
@spec_option(InferSpec, "on_bad_line", type=click.Choice(["fail", "skip"]))
@click.option(
    "--cache/--no-cache",
    default=None,
    help="Take results of texts seen before (same model, settings and precision) from the result cache, "
    "and add new ones [on for scheduled runs, else off].",
)
@click.option(
    "--changed-only",
    is_flag=True,
    help="Also write delta-part-* files beside the output: only the records whose text the cache had not "
    "seen (new or edited), listed under `delta` in manifest.json. Needs the cache.",
)
@_loading_options
@_queue_options
def submit_infer(
    model: str,
    task: str,
    inputs: tuple[str, ...],
    output: str,
    fmt: str,
    text_column: str | None,
    id_column: str | None,
    shards: str,
    precision: str,
    device: str,
    token_budget: int | None,
    max_length: int | None,
    all_scores: bool,
    normalize: bool,
    labels: str | None,
    question: str | None,
    question_column: str | None,
    text_pair_column: str | None,
    on_bad_line: str,
    trust_remote_code: bool,
    allow_pickle: bool,
    cache: bool | None,
    changed_only: bool,
    queue: str | None,
    priority: int,
    wait: bool,
    as_json: bool,
) -> None:
    """Run MODEL over corpora: sharded across workers, exactly one output record per input record."""
    from bertq.bulk import build_infer_spec, claim_output, plan_infer
    from bertq.db.submit import submit_plan

    queue = _pick_queue(queue, device)
    model_job = _model_job(model)
    spec = _validated(
        queue,
        priority,
        lambda: build_infer_spec(
            model=model,
            model_job=model_job,
            task=task,
            inputs=list(inputs),
            output=output,
            format=fmt,
            text_column=text_column,
            id_column=id_column,
            shards=shards,
            precision=precision,
            device=device,
            token_budget=token_budget,
            max_length=max_length,
            all_scores=all_scores,
            normalize=normalize,
            labels=labels,
            question=question,
            question_column=question_column,
            text_pair_column=text_pair_column,
            on_bad_line=on_bad_line,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle,
            cache=cache,
            changed_only=changed_only,
        ),
    )
    ids = submit_plan(plan_infer(spec, queue=queue, priority=priority))

    claim_output(spec.output, ids[0])
    _report_submitted(
        ids[0],
        "infer",
        queue,
        wait,
        as_json,
        f"; {len(spec.inputs)} input(s), planned into shards on a worker -> {spec.output}",
    )
