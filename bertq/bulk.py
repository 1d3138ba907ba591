"""`bertq submit infer`: bulk inference as a planning step, one job per shard, and a finishing job.

    submit (sample check) -> infer_plan (a worker) -> infer_shard x N (any worker) -> infer (manifest + _SUCCESS)

The submit reads a sample of each input (size, header, first MiB) and refuses bad input before
anything is enqueued; it never reads a whole corpus, so a nightly schedule fires in milliseconds.
The `infer_plan` step, on a worker, reads every input: it counts and checks the records, hashes each
shard's byte range, and adds the shard jobs to the pipeline in one fenced transaction. Standard
library and the spec modules only.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bertq import hubdata, sharding, store
from bertq.errors import BertqError, SpecError
from bertq.families import head_family
from bertq.infer_tasks import INFER_TASKS
from bertq.models import resolve_model
from bertq.plan import PlannedJob
from bertq.specs import PRECISIONS, _Spec
from bertq.tasks import DEFAULT_TOKEN_BUDGET

FORMATS = ("jsonl", "parquet")
MARKER = ".bertq-job"
"""Written into an output folder at submit: the folder belongs to that job from then on."""


@dataclass(frozen=True)
class InferSpec(_Spec):
    model: str
    model_location: str | None = field(metadata={"path": "model"})
    model_job_id: int | None
    task: str
    """classify, ner, embed, zero-shot or qa."""
    inputs: list[str] = field(metadata={"path": "data"})
    """Absolute paths, store URLs or Hub datasets of the inputs (globs expanded at submit)."""
    output: str = field(metadata={"path": "output"})
    """The output folder (with `{date}` already filled in)."""
    format: str = "jsonl"
    text_column: str | None = None
    id_column: str | None = None
    precision: str = "auto"
    """auto: bf16 on a GPU, and on a CPU with fast bf16 if its answers agree with fp32 on >= 99.5%
    of a sample; else fp32. Or fp32, fp16, bf16, int8."""
    device: str = "auto"
    """auto: the device of the worker that claims the shard (cuda when it has a GPU), or cpu, or cuda."""
    token_budget: int = 0
    """Tokens per batch (batch size x longest input); 0: by the device (cpu 16384... see DEFAULT_TOKEN_BUDGET);
    halved on a CUDA out-of-memory error."""
    max_length: int = 512
    all_scores: bool = False
    normalize: bool = False
    labels: list[str] | None = None
    question: str | None = None
    """qa: the question asked of every text."""
    pair_column: str | None = None
    """The column of each record's second text: `--text-pair-column` (classify, score) or
    `--question-column` (qa: the record's own question)."""
    on_bad_line: str = "fail"
    shards: int | None = None
    """Shards asked for (None: about one per 20 000 records); once planned, the number planned."""
    records: int = 0
    """Records in all inputs; 0 until the planning step has counted them."""
    cache: bool = False
    """Look each record up in the result cache first (`bertq.result_cache`); add new results after."""
    changed_only: bool = False
    """Also write delta files beside the full output: only the records whose text the cache had not
    seen (new or edited since the runs before), for systems downstream that take increments."""
    input_versions: dict[str, str | None] | None = None
    """Each input's version when submitted (size and mtime, a store's ETag): planning checks it."""
    trust_remote_code: bool = False
    """Let the model run its own Python code (`auto_map`); off unless asked for."""
    allow_pickle: bool = False
    """Load pickle weights when a folder has no safetensors; off unless asked for."""
    parent_job_id: int | None = None
    """An infer_shard step: the bulk job it is a shard of."""
    shard: dict[str, Any] | None = field(default=None, metadata={"path": "shard"})
    """An infer_shard step: its `sharding.Shard` (the file, byte range and records it covers)."""


def _output_problem(folder: Path) -> str | None:
    if folder.exists() and not folder.is_dir():
        return f"--output {folder} is a file; give a folder"
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    marker = folder / MARKER
    owner = marker.read_text().strip() if marker.is_file() else None
    what = f"the output of job {owner}" if owner else "other files"
    return f"--output {folder} already holds {what}; choose another folder (for nightly runs put {{date}} in --output) or empty it"


def resolve_output(output: str, run_date: dt.date | None = None) -> str:
    """`{date}` in --output becomes the run's date (the schedule slot's, or today's), e.g. 2026-11-26;
    a local folder becomes absolute, a store URL stays a URL."""
    date = run_date or _run_date()
    filled = output.replace("{date}", date.isoformat())
    return filled.rstrip("/") if store.is_url(filled) else str(Path(filled).expanduser().resolve())


def _stored_output_problem(url: str) -> str | None:
    """A store folder is free when nothing is under it (or only another submit's marker of this job)."""
    try:
        fs, path = store.filesystem(url)
        marker = store.join(url, MARKER)
        if store.exists(marker):
            owner = store.read_text(marker).strip()
            return f"--output {url} already holds the output of job {owner}; choose another folder (put {{date}} in it for nightly runs)"
        if fs.exists(path) and fs.find(path):
            return f"--output {url} already holds other objects; choose another folder or empty it"
    except store.StoreError as error:
        return f"--output: {error}"
    return None


def _run_date() -> dt.date:
    override = os.environ.get("BERTQ_RUN_DATE")  # set by `bertq beat` for the slot it fires
    return dt.date.fromisoformat(override) if override else dt.date.today()


def build_infer_spec(
    *,
    model: str,
    model_job: dict[str, Any] | None,
    task: str,
    inputs: list[str],
    output: str,
    format: str = "jsonl",
    text_column: str | None = None,
    id_column: str | None = None,
    shards: str | None = None,
    precision: str = "auto",
    device: str = "auto",
    token_budget: int | None = None,
    max_length: int | None = None,
    all_scores: bool = False,
    normalize: bool = False,
    labels: str | None = None,
    question: str | None = None,
    question_column: str | None = None,
    text_pair_column: str | None = None,
    on_bad_line: str = "fail",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    cache: bool | None = None,
    changed_only: bool = False,
) -> InferSpec:
    problems: list[str] = []
    if task not in INFER_TASKS:
        raise SpecError([f"unknown --task {task!r}; choose one of {', '.join(INFER_TASKS)}"])
    infer_task = INFER_TASKS[task]
    if format not in FORMATS:
        problems.append(f"--format {format!r}: choose jsonl or parquet")
    if precision not in ("auto", *PRECISIONS):
        problems.append(f"--precision {precision!r}: choose auto, {', '.join(PRECISIONS)}")
    if precision == "int8" and device == "cuda":
        problems.append("--precision int8 runs on the CPU only; use bf16 or fp16 with --device cuda")
    token_budget = token_budget or DEFAULT_TOKEN_BUDGET.get(device, 0)  # auto: chosen by the worker's device
    if 0 < token_budget < 64:
        problems.append(f"--token-budget {token_budget} is too small; use at least 64 (16384 is a good start)")
    if on_bad_line not in ("fail", "skip"):
        problems.append(f"--on-bad-line {on_bad_line!r}: choose fail or skip")
    shard_count: int | None = None
    if shards not in (None, "auto"):
        try:
            shard_count = int(shards)  # type: ignore[arg-type]
            if shard_count < 1:
                raise ValueError
        except ValueError:
            problems.append(f"--shards {shards!r}: give a positive number or auto")
    label_list = [label.strip() for label in (labels or "").split(",") if label.strip()] or None
    if infer_task.ranks_labels and not label_list:
        problems.append(f"{task} needs --labels a,b,c: the candidate labels to rank")
    if infer_task.asks_question and not (question or question_column):
        problems.append(f"{task} needs --question (asked of every text) or --question-column (each record's own)")
    if question and question_column:
        problems.append("give --question (one for every text) or --question-column (each record's own), not both")
    if question_column and not infer_task.asks_question:
        problems.append(f"--question-column is for --task qa; {task} asks no question")
    if text_pair_column and not infer_task.reads_pairs:
        readers = ", ".join(name for name, t in INFER_TASKS.items() if t.reads_pairs)
        problems.append(f"--text-pair-column: {task} reads one text a record; pairs are for {readers}")
    pair_column = question_column or text_pair_column
    use_cache = cache if cache is not None else bool(os.environ.get("BERTQ_RUN_DATE"))  # on for scheduled runs
    if changed_only and not use_cache:
        problems.append(
            "--changed-only tells new texts from seen ones by the result cache: add --cache (it is on by "
            "default only for scheduled runs)"
        )

    # The model: a finished job's checkpoint, or a folder / alias / hub id with the right head.
    location: str | None = None
    job_id = None
    if model_job is not None:
        job_id = model_job["id"]
        if model_job["kind"] not in ("finetune", "student"):
            problems.append(
                f"--model {job_id}: job {job_id} is a {model_job['kind']} job; give a fine-tune or student job's id"
            )
        elif model_job["status"] in ("FAILED", "CANCELLED"):
            problems.append(f"--model {job_id}: that job {model_job['status'].lower()}; it has no model")
        location = model_job.get("checkpoint")
    target = location if model_job is not None else model  # an unfinished job's head is checked when it runs
    if target:
        try:
            ref = resolve_model(target)
        except BertqError as error:
            problems.append(str(error))
        else:
            location = ref.location
            problems.extend(ref.loading_problems(trust_remote_code=trust_remote_code, allow_pickle=allow_pickle))
            carried = head_family(ref)
            needed = infer_task.head
            if needed is not None and carried is not needed:
                architectures = ", ".join(ref.config.get("architectures") or ["a bare encoder"])
                problems.append(
                    f"--model {model!r} has no trained {needed.name} head ({architectures}); --task {task} needs one"
                )
            if infer_task.ranks_labels and carried is needed:
                names = [str(v).lower() for v in (ref.config.get("id2label") or {}).values()]
                if not any(n.startswith("entail") for n in names):
                    problems.append(
                        f"--model {model!r} is not an NLI model (labels {names}); zero-shot needs an 'entailment' label"
                    )
            max_length = min(max_length or 512, ref.max_length or 512)

    sources: list[str] = []
    versions: dict[str, str | None] = {}
    try:
        samples = sharding.sample_inputs(
            inputs, text_column=text_column, id_column=id_column, on_bad_line=on_bad_line, pair_column=pair_column
        )
        sources = [s.name for s in samples]
        versions = {s.name: s.version for s in samples}
    except BertqError as error:
        problems.append(f"--input: {error}")
    folder = resolve_output(output)
    problem = _stored_output_problem(folder) if store.is_url(folder) else _output_problem(Path(folder))
    if problem:
        problems.append(problem)
    if problems:
        raise SpecError(problems)
    spec = InferSpec(
        model=model,
        model_location=location,
        model_job_id=job_id,
        task=task,
        inputs=sources,
        cache=use_cache,
        changed_only=changed_only,
        input_versions=versions,
        output=folder,
        format=format,
        text_column=text_column,
        id_column=id_column,
        precision=precision,
        device=device,
        token_budget=token_budget,
        max_length=max_length or 512,
        all_scores=all_scores,
        normalize=normalize,
        labels=label_list,
        question=question,
        pair_column=pair_column,
        on_bad_line=on_bad_line,
        shards=shard_count,
        trust_remote_code=trust_remote_code,
        allow_pickle=allow_pickle,
    )
    return spec


def plan_infer(spec: InferSpec, *, queue: str, priority: int) -> list[PlannedJob]:
    """Index 0 is the finishing job (manifest, _SUCCESS); it waits for the planning step, and once
    planned for every shard job too (`shard_jobs`)."""
    planning = PlannedJob(
        "infer_plan", lambda ids: replace(spec, parent_job_id=ids[0]).to_dict(), queue, priority, parent=0
    )
    return [PlannedJob("infer", spec.to_dict(), queue, priority, after=[1]), planning]


def plan_shards(spec: InferSpec) -> list[sharding.Shard]:
    """The planning step's work: read every input (a store object or Hub dataset through this
    machine's copy), check every record and cut the inputs into shards. A shard names its input
    as the spec does, so each worker reads its own copy of the same bytes."""
    sharding.check_versions(spec.input_versions or {})
    paths = sharding.expand_inputs(spec.inputs)
    planned = sharding.plan_shards(
        paths,
        shards=spec.shards,
        text_column=spec.text_column,
        id_column=spec.id_column,
        on_bad_line=spec.on_bad_line,
        pair_column=spec.pair_column,
    )
    origin = {
        str(hubdata.local_path(value)): str(hubdata.HubData.parse(value)) if hubdata.is_hub(value) else value
        for value in spec.inputs
        if hubdata.is_hub(value) or store.is_url(value)
    }
    return [replace(s, path=origin.get(s.path, s.path)) for s in planned]


def shard_jobs(
    spec: InferSpec, shards: list[sharding.Shard], *, parent: int, queue: str, priority: int
) -> list[PlannedJob]:
    """The steps the planning step adds to bulk job `parent`: one infer_shard job per shard."""
    return [
        PlannedJob(
            "infer_shard",
            replace(spec, parent_job_id=parent, shard=asdict(s)).to_dict(),
            queue,
            priority,
            after_existing=[spec.model_job_id] if spec.model_job_id and spec.model_location is None else [],
            parent_id=parent,
        )
        for s in shards
    ]


def shard_rows(parent: int, ids: list[int], shards: list[sharding.Shard]) -> list[dict[str, Any]]:
    """The `shards` table rows of a planned job: one per shard, linked to the shard's own job."""
    return [{**asdict(s), "job_id": parent, "shard_job_id": ids[i]} for i, s in enumerate(shards)]


def claim_output(folder: str, job_id: int) -> None:
    """Mark the output folder (or store prefix) as this job's: a second submit to it is refused."""
    if store.is_url(folder):
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            marker = Path(scratch) / MARKER
            marker.write_text(f"{job_id}\n")
            store.upload(marker, store.join(folder, MARKER))
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / MARKER).write_text(f"{job_id}\n")
