"""The distillation pipeline's three job kinds: teacher outputs, student training, summary.

Unlike the tutorial's loop, the frozen teacher runs once over the data (not on every batch of every
epoch), with its own tokenizer; its logits are cached on disk by a key of (teacher weights, data,
settings) and joined to the student's examples by example id, never by token ids, so teacher and
student may have different vocabularies. A classifier's soft label is one class vector a text; a
tagger's (NER) is one a word, the logits of the word's first sub-token (`WorkerFamily.soft_labels`).
"""

from __future__ import annotations

import hashlib
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import set_seed

from bertq import datafiles, hubdata, store
from bertq.distillation import DistillSpec
from bertq.errors import BertqError
from bertq.families import get_family
from bertq.worker.families import WorkerFamily, worker_family
from bertq.worker.inference import prepare_model, run_model
from bertq.worker.kd import IGNORE_INDEX, SoftLabelCollator, default_layer_map, distillation_loss, layer_losses
from bertq.worker.loading import (
    best_device,
    gpu_capability,
    half_precision,
    load_for_training,
    load_tokenizer,
    load_trained,
)
from bertq.worker.runner import JobContext, size_and_digest
from bertq.worker.students import cut_from_teacher, layer_count
from bertq.worker.training import (
    JobCallback,
    ScoringTrainer,
    attempt_dir,
    extra_callbacks,
    scorer_for,
    train_and_save,
    training_arguments,
)


def _teacher_folder(spec: DistillSpec, ctx: JobContext) -> str:
    folder = ctx.checkpoint_of(spec.teacher_job_id) if spec.teacher_job_id else spec.teacher_location
    if not folder:
        raise BertqError(f"the teacher (job {spec.teacher_job_id}) recorded no checkpoint")
    return folder


def _transfer_texts(spec: DistillSpec) -> list[str]:
    if not spec.transfer_data:
        return []
    path = hubdata.local_path(spec.transfer_data)
    if spec.transfer_column is None:  # plain text: one example per non-empty line
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [
        str(row[spec.transfer_column]).strip()
        for _, row in datafiles.read_rows(path)
        if str(row[spec.transfer_column]).strip()
    ]


def _file_digest(path: str | None) -> str:
    """The content digest of a data source (a Hub dataset's by its local copy), "-" for none."""
    return size_and_digest(hubdata.local_path(path))[1] if path else "-"


def _model_digest(location: str) -> str:
    """A folder's content digest; a Hub id (its weights are the Hub's) by name."""
    return size_and_digest(Path(location))[1] if Path(location).exists() else f"hub:{location}"


# --------------------------------------------------------------------------------------------


def _examples(spec: DistillSpec, family: WorkerFamily) -> list[Any]:
    """The student's training examples: the training data's, then the transfer texts (no gold label)."""
    return family.read_examples(spec.train, spec=spec, side="train") + [(t, None) for t in _transfer_texts(spec)]


def run_teacher_outputs(spec_values: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """One batched pass of the teacher over the training (and transfer) examples; soft labels cached by key."""
    spec = DistillSpec.from_dict(spec_values)
    family = worker_family(spec.family)
    teacher_folder = _teacher_folder(spec, ctx)
    key = hashlib.sha256(
        "|".join(
            [
                _model_digest(teacher_folder),
                _file_digest(spec.train),
                _file_digest(spec.transfer_data),
                spec.family,
                spec.text_column,
                str(spec.transfer_column),
                str(spec.max_length),
                "v2",
            ]
        ).encode()
    ).hexdigest()[:32]
    cache = ctx.settings.artifacts / "cache" / "teacher-outputs" / f"{key}.npz"
    shared = ctx.settings.artifact_store and store.join(
        ctx.settings.artifact_store, "cache", "teacher-outputs", f"{key}.npz"
    )
    if shared and not cache.is_file() and store.exists(shared):  # computed on another machine
        cache = store.cache(ctx.settings.home).data(shared)
    hit = cache.is_file()
    precision: str | None = None  # of the teacher pass, when this job ran it
    if hit:
        ctx.log.info("teacher outputs for key %s are cached at %s: reused", key, cache)
    else:
        unique = list({family.example_id(e): e for e in _examples(spec, family)}.values())
        device = best_device()
        tokenizer = load_tokenizer(teacher_folder, family=spec.family)  # the teacher's own tokenizer and vocabulary
        precision = half_precision(gpu_capability()) if device == "cuda" else "fp32"
        # Through prepare_model, so the pass runs in the precision it records (weights cast, not
        # an autocast that a bare model ignores).
        model = prepare_model(load_trained(teacher_folder, spec.family), precision=precision, device=device)
        ctx.progress(0.05, force=True, phase=f"teacher pass over {len(unique)} examples")
        features = family.teacher_features(unique, tokenizer, spec)
        outputs = run_model(
            model,
            {k: list(v) for k, v in features.items()},
            pad_id=tokenizer.pad_token_id or 0,
            device=device,
            precision=precision,
            batch_size=128,
        )
        soft = family.soft_labels(unique, features, [o["logits"] for o in outputs])
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f".{cache.name}.{os.getpid()}.partial.npz")
        # One (units, classes) array per example, stored end to end with each one's unit count.
        np.savez(
            partial,
            ids=np.array([family.example_id(e) for e in unique]),
            units=np.array([len(rows) for rows in soft], dtype=np.int64),
            logits=np.concatenate(soft).astype(np.float32),
        )
        os.replace(partial, cache)  # atomic: a reader sees the whole file or none
        if shared:
            store.upload(cache, shared)  # for the next distill of this teacher and data, on any machine
    ctx.artifact("teacher_logits", cache)
    ctx.metrics({"cache_hit": float(hit)})
    return {"cache_key": key, "cache_hit": hit, "path": str(cache), "precision": precision}


def _soft_labels(ctx: JobContext, spec: DistillSpec) -> dict[str, np.ndarray]:
    path = ctx.artifact_of(spec.teacher_outputs_job_id, "teacher_logits")
    if path is None:
        raise BertqError(f"the teacher-outputs step (job {spec.teacher_outputs_job_id}) recorded no logits")
    with np.load(path) as stored:  # no pickle: plain arrays only
        parts = np.split(stored["logits"], np.cumsum(stored["units"])[:-1])
        return dict(zip(stored["ids"].tolist(), parts))


class DistillationTrainer(ScoringTrainer):
    """The Trainer with the KD loss: soft labels come in each batch as `teacher_logits` (cached), and
    with `layers`, the layer-to-layer losses against the teacher run live on the same batch."""

    def __init__(self, *args: Any, temperature: float, alpha: float, layers: LayerTeacher | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.temperature = temperature
        self.alpha = alpha
        self.layers = layers
        if layers is not None:
            layers.model.to(self.args.device)
            if layers.projection is not None:
                layers.projection.to(self.args.device)

    def create_optimizer(self, model=None):  # type: ignore[no-untyped-def]
        optimizer = super().create_optimizer(model)
        if self.layers is not None and self.layers.projection is not None:  # learned with the student
            optimizer.add_param_group(
                {"params": list(self.layers.projection.parameters()), "weight_decay": self.args.weight_decay}
            )
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def, override]
        teacher_logits = inputs.pop("teacher_logits", None)
        labels = inputs.pop("labels")
        layers = self.layers
        extra = layers.outputs_wanted() if layers is not None else {}
        outputs = model(**inputs, **extra)
        if teacher_logits is not None:
            loss = distillation_loss(
                outputs.logits, teacher_logits, labels, temperature=self.temperature, alpha=self.alpha
            )
        else:  # no cached soft labels (alpha 0): gold labels, and the layer losses below
            loss = torch.nn.functional.cross_entropy(
                outputs.logits.reshape(-1, outputs.logits.size(-1)).float(),
                labels.reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
        if layers is not None:
            loss = loss + layers.loss(outputs, inputs)
        return (loss, outputs) if return_outputs else loss


@dataclass
class LayerTeacher:
    """The teacher, run at every student step for the layer-to-layer losses."""

    model: Any
    layer_map: list[int]
    hidden_weight: float
    attention_weight: float
    projection: torch.nn.Module | None = None

    def outputs_wanted(self) -> dict[str, bool]:
        return {"output_hidden_states": bool(self.hidden_weight), "output_attentions": bool(self.attention_weight)}

    def loss(self, student: Any, inputs: dict[str, Any]) -> Any:
        accepted = inspect.signature(self.model.forward).parameters
        given = {k: v for k, v in inputs.items() if k in accepted}
        with torch.no_grad():
            teacher = self.model(**given, **self.outputs_wanted())
        return layer_losses(
            student,
            teacher,
            inputs["attention_mask"],
            self.layer_map,
            projection=self.projection,
            hidden_weight=self.hidden_weight,
            attention_weight=self.attention_weight,
        )


def _layer_teacher(
    spec: DistillSpec, ctx: JobContext, student: Any, tokenizer: Any, teacher: Any | None
) -> LayerTeacher:
    """The teacher for the layer losses: its tokenizer must be the student's (they compare token by
    token), and the map says which teacher layer each student layer learns from."""
    teacher_folder = _teacher_folder(spec, ctx)
    theirs = load_tokenizer(teacher_folder, family=spec.family)
    if theirs.get_vocab() != tokenizer.get_vocab():
        raise BertqError(
            "the layer losses (--hidden-loss-weight, --attention-loss-weight) compare teacher and student token "
            f"by token, so they need one tokenizer; the teacher {teacher_folder} and the student {spec.student} "
            "have different vocabularies. Cut the student from the teacher (--student teacher), give a student "
            "with the teacher's vocabulary, or leave the layer losses out"
        )
    teacher = teacher if teacher is not None else load_trained(teacher_folder, spec.family)
    teacher.eval()
    if spec.attention_weight:  # the fused (sdpa) kernels return no attention probabilities
        for model in (teacher, student):
            model.set_attn_implementation("eager")
    student_layers, teacher_layers = layer_count(student.config), layer_count(teacher.config)
    layer_map = spec.layer_map or (
        list(spec.student_layers)
        if spec.student == "teacher" and spec.student_layers
        else default_layer_map(student_layers, teacher_layers)
    )
    widths = (student.config.hidden_size, teacher.config.hidden_size)
    projection = torch.nn.Linear(*widths) if spec.hidden_weight and widths[0] != widths[1] else None
    ctx.log.info(
        "layer losses: hidden %s, attention %s, student layer i <- teacher layer %s%s",
        spec.hidden_weight,
        spec.attention_weight,
        layer_map,
        f", hidden states projected {widths[0]} -> {widths[1]}" if projection is not None else "",
    )
    return LayerTeacher(teacher, layer_map, spec.hidden_weight, spec.attention_weight, projection)


def run_student(spec_values: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Train the student on gold labels and the teacher's cached soft labels."""
    from datasets import Dataset

    spec = DistillSpec.from_dict(spec_values)
    family = worker_family(spec.family)
    device = best_device()
    set_seed(spec.seed)

    teacher = None
    if spec.student == "teacher":
        teacher_folder = _teacher_folder(spec, ctx)
        tokenizer = load_tokenizer(teacher_folder, family=spec.family)
        teacher = load_trained(teacher_folder, spec.family)
        model = cut_from_teacher(teacher, spec.student_layers or [])
        ctx.log.info("student: layers %s of the teacher %s", spec.student_layers, teacher_folder)
    else:
        assert spec.student_location is not None
        tokenizer = load_tokenizer(spec.student_location, family=spec.family)
        model = load_for_training(spec.student_location, spec.family, spec.label_names)
        ctx.log.info("student: %s with its own tokenizer", spec.student_location)

    examples = _examples(spec, family)
    columns = family.train_features(examples, tokenizer, spec, spec.labels)
    distilling = spec.teacher_outputs_job_id is not None and (spec.alpha > 0 or spec.transfer_data)
    collator = family.data_collator(tokenizer)
    if distilling:
        soft = _soft_labels(ctx, spec)
        missing = [e for e in examples if family.example_id(e) not in soft]
        if missing:
            raise BertqError(
                f"the teacher's outputs lack {len(missing)} training examples (first: {str(missing[0])[:60]!r})"
            )
        columns["teacher_logits"] = family.soft_label_column(examples, tokenizer, spec, soft)
        collator = SoftLabelCollator(collator)
    train_set = Dataset.from_dict(columns)
    gold_count = sum(1 for _, label in examples if label is not None) if spec.transfer_data else len(examples)
    ctx.log.info(
        "%d training examples (%d with gold labels); alpha %s, T %s",
        len(examples),
        gold_count,
        spec.alpha,
        spec.temperature,
    )

    eval_examples = family.read_examples(spec.eval, spec=spec, side="eval")
    evaluation = family.eval_set(eval_examples, tokenizer, spec, spec.labels)

    score = scorer_for(evaluation, tokenizer, device)

    output_dir = attempt_dir(ctx)
    callback = JobCallback(ctx)
    arguments = training_arguments(
        output_dir=output_dir,
        spec=spec,
        metric_for_best=family.family.main_metric,
        device=device,
        keep_columns=bool(distilling),  # the layer losses need no extra column: the teacher runs on the batch
    )
    common: dict[str, Any] = dict(
        model=model,
        args=arguments,
        train_dataset=train_set,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        data_collator=collator,
        callbacks=[callback, *extra_callbacks(spec)],
        scorer=score,
    )
    layers = (
        _layer_teacher(spec, ctx, model, tokenizer, teacher) if spec.hidden_weight or spec.attention_weight else None
    )
    trainer = (
        DistillationTrainer(**common, temperature=spec.temperature, alpha=spec.alpha, layers=layers)
        if distilling or layers is not None
        else ScoringTrainer(**common)
    )
    return train_and_save(
        ctx, trainer, callback, score, tokenizer=tokenizer, spec_values=spec_values, phase="training student"
    )


def run_distill(spec_values: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """The pipeline's last step: compare the evaluated teacher and student."""
    spec = DistillSpec.from_dict(spec_values)
    if spec.teacher_eval_job_id is None or spec.student_eval_job_id is None:
        raise BertqError("a distill pipeline row needs its evaluate steps' ids (set when the pipeline is planned)")
    main = get_family(spec.family).main_metric
    teacher = ctx.metrics_of(spec.teacher_eval_job_id)
    student = ctx.metrics_of(spec.student_eval_job_id)
    summary = {
        "teacher_job": spec.teacher_job_id,
        "student_job": spec.student_job_id,
        "teacher_eval_job": spec.teacher_eval_job_id,
        "student_eval_job": spec.student_eval_job_id,
        "metric": main,
        "teacher_metric": teacher[main],
        "student_metric": student[main],
        # A teacher that scores 0 leaves nothing to retain: the share is undefined, not infinite.
        "retention": student[main] / teacher[main] if teacher[main] else None,
        "speedup": student["throughput_per_s"] / teacher["throughput_per_s"],
        "size_ratio": student["size_mb"] / teacher["size_mb"],
    }
    if summary["retention"] is None:
        ctx.log.warning("the teacher's %s is 0: retention is undefined (train the teacher longer)", main)
    ctx.metrics({k: summary[k] for k in ("retention", "speedup", "size_ratio") if summary[k] is not None})
    ctx.log.info("distillation summary: %s", summary)
    return {"summary": summary}
