"""Fine-tune: a pretrained encoder plus a new classification head, trained with the HF Trainer.

Reads top to bottom: spec, device, data, model, trainer, train (resuming from the last complete
checkpoint of an earlier attempt), evaluate the best model, save it with its spec beside it.
"""

from __future__ import annotations

import shutil
from typing import Any

import numpy as np
import torch
from transformers import DataCollatorWithPadding, Trainer, set_seed

from bertq.specs import FinetuneSpec
from bertq.worker.classification import accuracy_and_f1
from bertq.worker.loading import best_device, load_sequence_classifier, load_tokenizer
from bertq.worker.runner import JobContext
from bertq.worker.textdata import classification_dataset, load_labelled
from bertq.worker.training import (
    JobCallback,
    last_complete_checkpoint,
    raise_if_superseded,
    save_model_folder,
    training_arguments,
)


def run_finetune(spec_values: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    spec = FinetuneSpec.from_dict(spec_values)
    device = best_device()
    set_seed(spec.seed)
    ctx.log.info("fine-tune %s on %s (%s), device %s", spec.model, spec.train, spec.task, device)

    # Data: read with the same code that validated it at submit time.
    train = load_labelled(spec.train, spec.text_column, spec.label_column)
    evaluation = load_labelled(spec.eval, spec.text_column, spec.label_column)
    labels = spec.labels or sorted(set(train.labels))
    label_names = spec.label_names or labels

    tokenizer = load_tokenizer(spec.model_location)
    model = load_sequence_classifier(spec.model_location, label_names)
    train_set = classification_dataset(train, tokenizer, labels, spec.max_length)
    eval_set = classification_dataset(evaluation, tokenizer, labels, spec.max_length)
    ctx.log.info("%d training and %d evaluation examples, %d classes", len(train_set), len(eval_set), len(labels))

    def compute_metrics(prediction: Any) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return accuracy_and_f1(np.argmax(logits, axis=-1), prediction.label_ids, len(labels))

    output_dir = ctx.workdir / "trainer"
    callback = JobCallback(ctx)
    trainer = Trainer(
        model=model,
        args=training_arguments(output_dir=output_dir, spec=spec, metric_for_best="accuracy", device=device),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=[callback],
    )

    resume = last_complete_checkpoint(output_dir)
    if resume is not None:
        ctx.log.info("resuming from %s", resume)
    ctx.progress(0.0, force=True, step=0, total=None, phase="training")
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    raise_if_superseded(ctx)

    # The Trainer reloaded the best epoch's weights; evaluate them so the recorded numbers are theirs.
    callback.record_evaluations = False
    with torch.inference_mode():
        final = trainer.evaluate()
    best = {k: float(v) for k, v in final.items() if k in ("eval_accuracy", "eval_f1", "eval_loss")}
    ctx.metrics(best, split="eval", step=trainer.state.global_step)

    checkpoint = save_model_folder(folder=ctx.workdir / "checkpoint", model=trainer.model, tokenizer=tokenizer, spec=spec_values)
    ctx.artifact("checkpoint", checkpoint)
    shutil.rmtree(output_dir, ignore_errors=True)  # intermediate checkpoints: the best one is saved above
    ctx.log.info("best model: %s, saved to %s", best, checkpoint)
    return {"checkpoint": str(checkpoint), **best}
