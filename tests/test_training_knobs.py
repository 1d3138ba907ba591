"""The training knobs take effect, and gradient accumulation averages the loss (it does not sum it)."""

from __future__ import annotations

from pathlib import Path

import pytest


def _one_step(tiny_model: Path, folder: Path, *, batch: int, accumulation: int, distil: bool) -> dict:
    """The weights after one optimiser step (SGD, no dropout) over the same 16 examples."""
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        TrainingArguments,
    )

    from bertq.worker.jobs.distill import DistillationTrainer
    from bertq.worker.training import ScoringTrainer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_model, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    texts = [f"the movie was {'great' if i % 2 else 'dull'} and {'fun' if i % 3 else 'long'}" for i in range(16)]
    columns = {k: list(v) for k, v in tokenizer(texts, truncation=True, max_length=32).items()}
    columns["labels"] = [i % 2 for i in range(16)]
    if distil:
        columns["teacher_logits"] = [[float(i % 3), -float(i % 2)] for i in range(16)]
    args = TrainingArguments(
        output_dir=str(folder), per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
        max_steps=1, learning_rate=0.5, optim="sgd", lr_scheduler_type="constant", weight_decay=0.0,
        max_grad_norm=1e9, report_to=[], use_cpu=True, remove_unused_columns=not distil, save_strategy="no",
        eval_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    trainer_class = DistillationTrainer if distil else ScoringTrainer
    extra = {"temperature": 2.0, "alpha": 0.5} if distil else {}
    trainer = trainer_class(
        model=model, args=args, train_dataset=Dataset.from_dict(columns), scorer=lambda m: {},
        data_collator=_collator(DataCollatorWithPadding(tokenizer)), **extra,
    )  # fmt: skip
    trainer.train()
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def _collator(pad):  # type: ignore[no-untyped-def]
    import torch

    def collate(rows):  # type: ignore[no-untyped-def]
        teacher = [row.pop("teacher_logits") for row in rows if "teacher_logits" in row]
        batch = pad(rows)
        if teacher:
            batch["teacher_logits"] = torch.tensor(teacher)
        return batch

    return collate


@pytest.mark.parametrize("distil", [False, True], ids=["fine-tune", "distil"])
def test_gradient_accumulation_averages_the_loss(tiny_model, tmp_path, distil):
    import torch

    whole = _one_step(tiny_model, tmp_path / "a", batch=16, accumulation=1, distil=distil)
    halves = _one_step(tiny_model, tmp_path / "b", batch=8, accumulation=2, distil=distil)
    start = _one_step(tiny_model, tmp_path / "c", batch=16, accumulation=1, distil=distil)  # deterministic
    moved = max((whole[k] - v).abs().max().item() for k, v in halves.items())
    assert all(torch.equal(whole[k], start[k]) for k in whole)
    assert moved < 1e-5, f"2 x 8 with accumulation moved the weights {moved} away from one batch of 16"


def test_the_knobs_reach_the_trainer_and_take_effect(tiny_model, tiny_data, tmp_path):
    """One in-process fine-tune with every knob set: what the Trainer ran with, and what it did."""
    from bertq.specs import build_finetune_spec
    from bertq.worker.context import LocalContext, call_local

    train, dev = tiny_data
    spec = build_finetune_spec(
        model=str(tiny_model), task="sst2", train=str(train), eval=str(dev), epochs=5, max_length=32,
        batch_size=16, lr=1e-9,  # nothing improves after the first evaluation: early stopping ends it
        knobs={"warmup_ratio": 0.25, "weight_decay": 0.2, "grad_accum": 2, "precision": "bf16",
               "max_grad_norm": 0.5, "metric_for_best": "f1", "early_stopping": 1},
    )  # fmt: skip
    ctx = LocalContext(workdir=tmp_path / "job", job_id=1)
    result = call_local("finetune", spec.to_dict(), ctx)
    assert result["training"] == {
        "warmup_ratio": 0.25, "weight_decay": 0.2, "max_grad_norm": 0.5, "metric_for_best": "f1",
        "early_stopping": 1, "epochs_run": 2.0,  # stopped after 2 of 5 epochs: no improvement at the second
    }  # fmt: skip
    assert result["precision"] == "bf16" and result["gradient_accumulation_steps"] == 2
    evaluations = [step for values, split, step in ctx.reported_metrics if split == "eval" and "eval_f1" in values]
    assert evaluations[:2] == [5, 10]  # 160 examples / (16 x 2) = 5 optimiser steps an epoch


def test_knobs_default_to_the_models_recipe_and_bad_values_are_refused(tiny_model, tiny_data):
    from bertq.errors import SpecError
    from bertq.specs import build_finetune_spec

    train, dev = tiny_data
    spec = build_finetune_spec(model=str(tiny_model), task="sst2", train=str(train), eval=str(dev), max_length=32)
    assert (spec.warmup_ratio, spec.weight_decay) == (0.1, 0.01)  # a BERT: the BERT paper's recipe
    with pytest.raises(SpecError) as refused:
        build_finetune_spec(
            model=str(tiny_model), task="sst2", train=str(train), eval=str(dev), max_length=32,
            knobs={"warmup_ratio": 1.5, "grad_accum": 0, "metric_for_best": "entity_f1", "max_grad_norm": 0},
        )  # fmt: skip
    message = str(refused.value)
    assert "--warmup-ratio must be at least 0 and below 1" in message and "--grad-accum must be at least 1" in message
    assert "--metric-for-best 'entity_f1': this task reports accuracy, f1" in message
    assert "--max-grad-norm must be more than 0" in message


def test_a_model_no_better_than_the_majority_class_is_flagged_in_show_jobs_and_report(
    bertq, tiny_model, tiny_data, tmp_path
):
    """A fine-tune that learned nothing scores the majority class's share: show, jobs and the report say so."""
    from bertq.db import jobs as q
    from bertq.db.models import JobStatus
    from bertq.specs import build_finetune_spec
    from bertq.worker.context import LocalContext, call_local

    train, dev = tiny_data
    spec = build_finetune_spec(model=str(tiny_model), task="sst2", train=str(train), eval=str(dev), epochs=1,
                               max_length=32, batch_size=16, lr=1e-9)  # fmt: skip
    ctx = LocalContext(workdir=tmp_path / "job", job_id=1)
    call_local("finetune", spec.to_dict(), ctx)
    learned = ctx.latest_metrics()
    labels = [line.rsplit("\t", 1)[1] for line in dev.read_text().splitlines()[1:]]
    majority = max(labels.count(label) for label in set(labels)) / len(labels)
    assert learned["eval_majority_baseline"] == pytest.approx(majority)
    assert learned["eval_accuracy"] <= majority + 0.005  # lr 1e-9: it answers one class

    # Its numbers as an evaluate job's would be recorded, and what a user sees.
    metrics = {"accuracy": learned["eval_accuracy"], "majority_baseline": majority, "f1": 0.0, "size_mb": 1.0,
               "latency_p50_ms": 1.0, "latency_p95_ms": 2.0, "throughput_per_s": 100.0, "peak_memory_mb": 10.0}  # fmt: skip
    with bertq.sessions()() as s, s.begin():
        job = q.create_job(session=s, kind="evaluate", spec={"model": "flat", "task": "sst2", "data": str(dev)},
                           queue="cpu", priority=5, max_attempts=1)  # fmt: skip
        job_id = job.id
    with bertq.sessions()() as s, s.begin():
        q.claim(session=s, job_id=job_id, worker="w", lease_seconds=60)
        q.add_metrics(session=s, job_id=job_id, attempt=1, values=metrics, split="test", step=None, epoch=None)
        q.finish(session=s, job_id=job_id, attempt=1, status=JobStatus.SUCCEEDED, result={"device": "cpu"})
    shown = bertq.run("show", str(job_id), check=True).stdout
    assert "warning: accuracy" in shown and "no better than always answering the most common label" in shown
    listed = bertq.run("jobs", check=True).stdout
    assert " !" in listed and "! no better than always answering the most common label" in listed
    reported = bertq.run("report", check=True).stdout
    assert "warning: flat" in reported and "learned nothing useful" in reported
