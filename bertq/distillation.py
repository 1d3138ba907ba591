"""`bertq submit distill`: the spec, its checks, and the pipeline of jobs it expands into.

    [fine-tune teacher] -> teacher outputs (cached) -> train student -> evaluate teacher
                                                                   \\-> evaluate student -> summary

Each step is a job row; the pipeline's own row (kind `distill`) waits for the evaluations and then
records the summary: retention, speed-up and size ratio. Standard library and the DB layer only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bertq import datafiles, formats, hubdata, store
from bertq.errors import BertqError, SpecError
from bertq.families import PRESETS, head_family
from bertq.labels import match_labels, parse_label_map
from bertq.models import ModelRef, resolve_model
from bertq.plan import PlannedJob
from bertq.recipes import Recipe, recipe_for
from bertq.specs import (
    DEFAULT_TASK,
    EvaluateSpec,
    FinetuneSpec,
    TrainingKnobs,
    _check_numbers,
    build_finetune_spec,
    training_knobs,
)


def teacher_recipe(model_type: str | None) -> Recipe:
    return recipe_for(model_type)


@dataclass(frozen=True)
class DistillSpec(TrainingKnobs):
    teacher: str
    """The teacher as given: a finished fine-tune's job id, a fine-tuned folder, or a model to fine-tune first."""
    teacher_job_id: int | None
    """The job whose checkpoint is the teacher (an existing fine-tune, or the pipeline's own)."""
    teacher_location: str | None = field(metadata={"path": "model"})
    """A fine-tuned teacher folder used as it is (when no job trains it)."""
    student: str
    """`teacher` (cut from it), or an alias, hub id or folder."""
    student_location: str | None = field(metadata={"path": "model"})
    student_layers: list[int] | None
    """With `--student teacher`: the teacher layers the student keeps, in order."""
    task: str
    family: str
    train: str = field(metadata={"path": "data"})
    eval: str = field(metadata={"path": "data"})
    text_column: str
    label_column: str
    labels: list[str]
    label_names: list[str]
    temperature: float = 4.0
    """Softmax temperature T of the soft labels; the KD term is scaled by T^2."""
    alpha: float = 0.5
    """Weight of the KD term; 1 - alpha weighs cross-entropy on the gold labels. 0: no teacher."""
    hidden_weight: float = 0.0
    """Weight of the hidden-state loss (DistilBERT's cosine; through a learned projection when the
    widths differ) between mapped layers; 0: off. Runs the teacher at every step."""
    attention_weight: float = 0.0
    """Weight of the attention loss (TinyBERT/MiniLM: KL of attention distributions, heads averaged)
    between mapped layers; 0: off. Runs the teacher at every step."""
    layer_map: list[int] | None = None
    """The teacher layer each student layer learns from [a cut student: the layers it was cut from;
    else spread evenly, last to last]."""
    transfer_data: str | None = field(default=None, metadata={"path": "data"})
    """Unlabelled text the teacher labels (soft labels only), added to the student's training set."""
    transfer_column: str | None = None
    epochs: float = 3.0
    batch_size: int = 32
    lr: float = 1e-4
    gpus: int = 1
    """Data-parallel processes for the student's training (and the teacher's fine-tune), one GPU each."""
    max_length: int = 128
    seed: int = 42
    teacher_outputs_job_id: int | None = None
    """Filled in by the pipeline: the job that computed (or reused) the teacher's logits."""
    student_job_id: int | None = None
    """Filled in by the pipeline (its summary row): the job that trained the student."""
    teacher_eval_job_id: int | None = None
    """Filled in by the pipeline: the evaluate job of the teacher."""
    student_eval_job_id: int | None = None
    """Filled in by the pipeline: the evaluate job of the student."""
    trust_remote_code: bool = False
    """Let teacher and student run their own Python code (`auto_map`); off unless asked for."""
    allow_pickle: bool = False
    """Load pickle weights when a folder has no safetensors; off unless asked for."""


def _teacher_from_job(job: dict[str, Any], problems: list[str]) -> dict[str, Any] | None:
    if job["kind"] != "finetune":
        problems.append(f"--teacher {job['id']}: job {job['id']} is a {job['kind']} job; give a fine-tune job's id")
        return None
    if job["status"] in ("FAILED", "CANCELLED"):
        problems.append(f"--teacher {job['id']}: that fine-tune {job['status'].lower()}; it has no model to teach with")
        return None
    return job["spec"]


def _layers(value: str | None, teacher_layers: int | None, problems: list[str]) -> list[int] | None:
    if value is None:
        return None
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        problems.append(f"--student-layers {value!r}: give a count (6) or a list of layer indices (0,2,4)")
        return None
    if teacher_layers is None:
        return numbers
    if len(numbers) == 1 and "," not in value:  # a count: spread evenly, first layer kept (DistilBERT's choice)
        count = numbers[0]
        if not 0 < count <= teacher_layers:
            problems.append(
                f"--student-layers {count}: the teacher has {teacher_layers} layers; keep 1 to {teacher_layers}"
            )
            return None
        return [round(i * teacher_layers / count) for i in range(count)]
    outside = [i for i in numbers if not 0 <= i < teacher_layers]
    if outside or len(set(numbers)) != len(numbers):
        problems.append(
            f"--student-layers {value}: indices must be distinct and within the teacher's layers 0..{teacher_layers - 1}"
            + (f" ({', '.join(map(str, outside))} is not)" if outside else "")
        )
        return None
    return numbers


def cut_problem(config: dict[str, Any]) -> str | None:
    """Why a student cannot be cut from a teacher with this config.json, or None. ALBERT shares its
    weights: with one group a student is the shared layer applied fewer times, but with several
    groups the layers a group serves move when the depth changes, so no weights would stay in place."""
    groups = config.get("num_hidden_groups", 1)
    if config.get("model_type") == "albert" and groups != 1:
        return (
            f"this ALBERT teacher has {groups} groups of shared layers; a cut student would reassign them, "
            "so --student teacher needs an ALBERT with num_hidden_groups 1 (or give --student a smaller model)"
        )
    return None


def _layer_count(config: dict[str, Any]) -> int | None:
    for key in ("num_hidden_layers", "n_layers"):
        if isinstance(config.get(key), int):
            return config[key]
    return None


def build_distill_spec(
    *,
    teacher: str,
    teacher_job: dict[str, Any] | None,
    student: str,
    student_layers: str | None,
    task: str | None,
    train: str | None,
    eval: str | None,
    text_column: str | None = None,
    label_column: str | None = None,
    temperature: float = DistillSpec.temperature,
    alpha: float = DistillSpec.alpha,
    transfer_data: str | None = None,
    transfer_column: str | None = None,
    epochs: float = DistillSpec.epochs,
    batch_size: int = DistillSpec.batch_size,
    lr: float = DistillSpec.lr,
    max_length: int = DistillSpec.max_length,
    seed: int = DistillSpec.seed,
    teacher_epochs: float | None = None,
    teacher_batch_size: int | None = None,
    teacher_lr: float | None = None,
    label_map: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    gpus: int = 1,
    knobs: dict[str, Any] | None = None,
    hidden_weight: float = 0.0,
    attention_weight: float = 0.0,
    layer_map: str | None = None,
) -> tuple[DistillSpec, FinetuneSpec | None]:
    """The distill spec, and the teacher's fine-tune spec when the teacher must be trained first."""
    problems: list[str] = []
    trained = _teacher_from_job(teacher_job, problems) if teacher_job else None
    task = task or (trained or {}).get("task") or DEFAULT_TASK
    distillable = ", ".join(name for name, preset in PRESETS.items() if preset.family.distillable)
    if task not in PRESETS:
        raise SpecError([*problems, f"unknown task {task!r}; distill supports: {distillable}"])
    family = PRESETS[task].family
    if not family.distillable:
        raise SpecError(
            [
                *problems,
                f"distill does not support {task} ({family.words}): {family.not_distillable_because}. Fine-tune "
                f"a smaller model on it directly (distill supports {distillable})",
            ]
        )
    if transfer_data is not None and not family.distills_transfer_text:
        problems.append(
            f"--transfer-data is plain text for a classifier's teacher to label; {task} ({family.words}) "
            "trains on its own data files only: leave --transfer-data out"
        )
    if not 0 <= alpha <= 1:
        problems.append(f"--alpha must be between 0 and 1 (got {alpha}): the weight of the teacher's soft labels")
    if temperature <= 0:
        problems.append(f"--temperature must be more than 0 (got {temperature}); 2 to 8 is usual")
    _check_numbers(problems, batch_size=batch_size, gpus=gpus)
    if trained:
        train = train or trained["train"]
        eval = eval or trained["eval"]
        text_column = text_column or trained["text_column"]
        label_column = label_column or trained["label_column"]
    mapping = parse_label_map(label_map, problems)

    # The student's training data, checked as a fine-tune's would be (with the student as model).
    teacher_finetune: FinetuneSpec | None = None
    teacher_location: str | None = None
    teacher_config: dict[str, Any] = {}
    teacher_labels: list[str] | None = (trained or {}).get("labels")
    teacher_names: list[str] | None = None
    """A fine-tuned teacher's own class names (id2label), matched to the data's labels below."""
    if teacher_job is None:
        try:
            ref = resolve_model(teacher)
            teacher_config = ref.config
            problems.extend(
                f"--teacher: {p}"
                for p in ref.loading_problems(trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
            )
            if head_family(ref) is family:
                teacher_location = ref.location  # already fine-tuned: used as it is
                teacher_names = _folder_labels(ref)
        except BertqError as error:
            problems.append(f"--teacher: {error}")
    else:
        location = teacher_job.get("checkpoint") or trained and trained.get("model_location")
        if location:
            try:
                teacher_config = resolve_model(location).config
            except BertqError as error:
                problems.append(f"--teacher: {error}")

    recipe = teacher_recipe(teacher_config.get("model_type"))
    data_spec = None
    try:
        data_spec = build_finetune_spec(
            model=teacher_location or (trained or {}).get("model_location") or teacher,
            task=task,
            train=train,
            eval=eval,
            text_column=text_column,
            label_column=label_column,
            epochs=teacher_epochs or recipe.epochs,
            batch_size=teacher_batch_size or recipe.batch_size,
            lr=teacher_lr or recipe.lr,
            max_length=max_length,
            seed=seed,
            evaluate=False,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle,
            gpus=gpus,
        )
    except SpecError as error:
        # The teacher was resolved above already: its problem is not said twice.
        problems.extend(p for p in error.problems if f"--teacher: {p}" not in problems)
    if data_spec is not None and data_spec.text_pair_column:
        problems.append(
            f"distill reads single texts; {task} is a sentence-pair task, not supported by distill yet: "
            "fine-tune a smaller model on the pairs directly (bertq submit finetune --task ...)"
        )
    if data_spec is not None and teacher_job is None and teacher_location is None:
        teacher_finetune = data_spec  # a base model: fine-tune it on the task first
    if teacher_names is not None and data_spec is not None and data_spec.labels:
        teacher_labels, problem = match_labels(
            teacher_names,
            data_spec.labels,
            data_names=dict(zip(data_spec.labels, data_spec.label_names or data_spec.labels)),
            label_map=mapping,
            who=f"the teacher {teacher!r}",
        )
        if problem:
            problems.append(problem)
    labels = teacher_labels or (data_spec.labels if data_spec else None)
    if data_spec is not None and teacher_labels is not None and set(data_spec.labels or []) - set(teacher_labels):
        problems.append(
            f"the data's labels {data_spec.labels} are not the teacher's {teacher_labels}: teacher and student "
            "must share one label set" + (" (--label-map must cover every label of the data)" if mapping else "")
        )

    student_location = None
    student_config = teacher_config
    layers = None
    if student == "teacher":
        if student_layers is None:
            problems.append("--student teacher needs --student-layers: a count (6) or indices (0,2,4)")
        layers = _layers(student_layers, _layer_count(teacher_config), problems)
        problem = cut_problem(teacher_config)
        problems.extend([f"--student teacher: {problem}"] if problem else [])
    else:
        if student_layers is not None:
            problems.append("--student-layers cuts the student from the teacher: use it with --student teacher")
        try:
            ref = resolve_model(student)
            student_location = ref.location
            student_config = ref.config
            if ref.max_length is not None and max_length > ref.max_length:
                problems.append(
                    f"--max-length {max_length} is longer than --student {student!r} accepts ({ref.max_length} "
                    f"tokens); use --max-length {ref.max_length} or less"
                )
            problems.extend(
                f"--student: {p}"
                for p in ref.loading_problems(trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
            )
            carried = head_family(ref)
            if carried is family and labels is not None:
                names = _folder_labels(ref)
                if len(names) != len(labels):
                    problems.append(
                        f"--student {student!r} has a {len(names)}-class head but the teacher has {len(labels)} "
                        "classes: teacher and student must have the same label count"
                    )
                elif (
                    not _generic(names)
                    and set(names) != set(labels)
                    and set(names) != set((data_spec.label_names if data_spec else None) or [])
                ):
                    problems.append(
                        f"--student {student!r} predicts {names}, the teacher {labels}: the label sets differ"
                    )
            elif carried is not None and carried is not family:
                problems.append(
                    f"--student {student!r} has a {carried.words} head; give a bare encoder or a {family.words} model"
                )
        except BertqError as error:
            problems.append(f"--student: {error}")

    if transfer_data is not None and family.distills_transfer_text:
        transfer_column = _check_transfer(transfer_data, transfer_column, problems)
    mapped = _layer_map(
        layer_map,
        hidden_weight,
        attention_weight,
        student_layers=len(layers) if layers else _layer_count(student_config),
        teacher_layers=_layer_count(teacher_config),
        problems=problems,
    )
    student_knobs = training_knobs(knobs or {}, student_config, family.metrics, problems)
    if problems:
        raise SpecError(problems)
    assert data_spec is not None and labels is not None
    return (
        DistillSpec(
            teacher=teacher,
            teacher_job_id=teacher_job["id"] if teacher_job else None,
            teacher_location=teacher_location,
            student=student,
            student_location=student_location,
            student_layers=layers,
            task=task,
            family=data_spec.family,
            train=data_spec.train,
            eval=data_spec.eval,
            text_column=data_spec.text_column,
            label_column=data_spec.label_column,
            labels=labels,
            label_names=(trained or {}).get("label_names") or _names_for(labels, data_spec),
            temperature=temperature,
            alpha=alpha,
            hidden_weight=hidden_weight,
            attention_weight=attention_weight,
            layer_map=mapped,
            transfer_data=_source(transfer_data),
            transfer_column=transfer_column,
            epochs=float(epochs),
            batch_size=batch_size,
            lr=lr,
            gpus=gpus,
            max_length=max_length,
            seed=seed,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle,
            **student_knobs,
        ),
        teacher_finetune,
    )


def _layer_map(
    value: str | None,
    hidden_weight: float,
    attention_weight: float,
    *,
    student_layers: int | None,
    teacher_layers: int | None,
    problems: list[str],
) -> list[int] | None:
    """The checked `--layer-map` (None: the worker's default for the student); problems for weights
    below 0 and maps that do not fit the two models."""
    for name, weight in (("--hidden-loss-weight", hidden_weight), ("--attention-loss-weight", attention_weight)):
        if weight < 0:
            problems.append(f"{name} must be 0 (off) or more, not {weight}; 1 weighs it like the KD term")
    if value is None:
        return None
    if not (hidden_weight or attention_weight):
        problems.append(
            "--layer-map maps layers for the layer losses: give --hidden-loss-weight or --attention-loss-weight"
        )
        return None
    try:
        mapped = [int(part) for part in value.split(",")]
    except ValueError:
        problems.append(f"--layer-map {value!r}: give one teacher layer index per student layer, e.g. 1,3,5")
        return None
    if student_layers is not None and len(mapped) != student_layers:
        problems.append(
            f"--layer-map {value}: the student has {student_layers} layer{'s' if student_layers != 1 else ''}; "
            "give one teacher layer for each"
        )
    if teacher_layers is not None and any(not 0 <= i < teacher_layers for i in mapped):
        problems.append(f"--layer-map {value}: teacher layers are 0..{teacher_layers - 1}")
    return mapped


def _source(value: str | None) -> str | None:
    """A data source as stored: a Hub dataset in its canonical form, a file as an absolute path."""
    if value is None:
        return None
    if hubdata.is_hub(value):
        return str(hubdata.HubData.parse(value))
    if store.is_url(value):
        return value
    return str(Path(value).resolve())


def _names_for(labels: list[str], data_spec: FinetuneSpec) -> list[str]:
    """Human names of `labels` (in the teacher's class order) from the data's names."""
    names = dict(zip(data_spec.labels or [], data_spec.label_names or data_spec.labels or []))
    return [names.get(label, label) for label in labels]


def _generic(names: list[str]) -> bool:
    return all(name.startswith("LABEL_") for name in names)


def _folder_labels(ref: ModelRef) -> list[str]:
    spec_file = Path(ref.location) / "bertq_spec.json"
    if spec_file.is_file():
        import json

        labels = json.loads(spec_file.read_text()).get("labels")
        if labels:
            return labels
    id2label = ref.config.get("id2label") or {}
    return [id2label[key] for key in sorted(id2label, key=int)]


def _check_transfer(path: str, column: str | None, problems: list[str]) -> str | None:
    file = Path(path)
    if hubdata.is_hub(path) or store.is_url(path):
        try:
            file = hubdata.local_path(path)
        except (hubdata.HubDataError, store.StoreError) as error:
            problems.append(f"--transfer-data: {error}")
            return None
    if not file.is_file():
        problems.append(
            f"--transfer-data: no file {path!r}; give unlabelled text (one per line) or a TSV/CSV/JSONL file"
        )
        return None
    if file.suffix.lower() in (".txt", ".raw", ""):
        return None
    try:
        columns = datafiles.columns_of(file)
    except datafiles.DataFileError as error:
        problems.append(f"--transfer-data: {error}")
        return None
    column = column or formats.guess_text_column(columns)
    if column not in columns:
        problems.append(
            f"--transfer-data {path}: no text column {column!r} (columns: {', '.join(columns)}); name it with --transfer-column"
        )
    return column


def plan_distill(
    spec: DistillSpec, teacher_finetune: FinetuneSpec | None, *, queue: str, priority: int, device: str
) -> list[PlannedJob]:
    """The pipeline's jobs, parent first. Index 0 is the pipeline (it runs last, as the summary)."""
    plan: list[PlannedJob] = [PlannedJob("distill", {}, queue, priority)]
    existing_teacher = [spec.teacher_job_id] if spec.teacher_job_id else []

    teacher_step: int | None = None
    if teacher_finetune is not None:
        plan.append(PlannedJob("finetune", teacher_finetune.to_dict(), queue, priority, parent=0))
        teacher_step = len(plan) - 1

    def teacher_id(ids: list[int]) -> int | None:
        return ids[teacher_step] if teacher_step is not None else spec.teacher_job_id

    after_teacher = [teacher_step] if teacher_step is not None else []
    outputs_step: int | None = None
    if spec.alpha > 0 or spec.transfer_data:
        plan.append(
            PlannedJob(
                "teacher_outputs",
                lambda ids: replace(spec, teacher_job_id=teacher_id(ids)).to_dict(),
                queue,
                priority,
                after=after_teacher,
                after_existing=existing_teacher,
                parent=0,
            )
        )
        outputs_step = len(plan) - 1
    plan.append(
        PlannedJob(
            "student",
            lambda ids: replace(
                spec,
                teacher_job_id=teacher_id(ids),
                teacher_outputs_job_id=ids[outputs_step] if outputs_step is not None else None,
            ).to_dict(),
            queue,
            priority,
            after=after_teacher + ([outputs_step] if outputs_step is not None else []),
            after_existing=existing_teacher,
            parent=0,
        )
    )
    student_step = len(plan) - 1

    def evaluation(model_job: Any, name: str) -> Any:
        return lambda ids: EvaluateSpec(
            model=name,
            model_location=spec.teacher_location if model_job is None else None,
            model_job_id=model_job(ids) if model_job else None,
            task=spec.task,
            family=spec.family,
            data=spec.eval,
            text_column=spec.text_column,
            label_column=spec.label_column,
            labels=spec.labels,
            device=device,
            max_length=spec.max_length,
            seed=spec.seed,
            trust_remote_code=spec.trust_remote_code,
            allow_pickle=spec.allow_pickle,
        ).to_dict()

    teacher_model = (lambda ids: teacher_id(ids)) if (teacher_step is not None or spec.teacher_job_id) else None
    plan.append(
        PlannedJob(
            "evaluate",
            evaluation(teacher_model, f"teacher:{spec.teacher}"),
            queue,
            priority,
            after=after_teacher,
            after_existing=existing_teacher,
            parent=0,
        )
    )
    teacher_eval = len(plan) - 1
    plan.append(
        PlannedJob(
            "evaluate",
            evaluation(lambda ids: ids[student_step], f"student:{spec.student}"),
            queue,
            priority,
            after=[student_step],
            parent=0,
        )
    )
    student_eval = len(plan) - 1
    plan[0] = PlannedJob(
        "distill",
        lambda ids: replace(
            spec,
            teacher_job_id=teacher_id(ids),
            student_job_id=ids[student_step],
            teacher_eval_job_id=ids[teacher_eval],
            student_eval_job_id=ids[student_eval],
        ).to_dict(),
        queue,
        priority,
        after=[teacher_eval, student_eval],
    )
    return plan
