"""Fine-tune: a pretrained encoder plus a new head for the task, trained with the HF Trainer.

Reads top to bottom: spec, device, data, model, trainer, train (resuming from the last complete
checkpoint of an earlier attempt), evaluate the best model, save it with its spec beside it.
"""

from __future__ import annotations

import random
from typing import Any

from transformers import set_seed

from bertq.specs import FinetuneSpec
from bertq.worker.families import worker_family
from bertq.worker.loading import best_device, load_for_training, load_tokenizer
from bertq.worker.runner import JobContext
from bertq.worker.training import (
    JobCallback,
    ScoringTrainer,
    attempt_dir,
    extra_callbacks,
    scorer_for,
    train_and_save,
    training_arguments,
)


def run_finetune(spec_values: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    spec = FinetuneSpec.from_dict(spec_values)
    family = worker_family(spec.family)
    device = best_device()
    set_seed(spec.seed)
    ctx.log.info("fine-tune %s for %s on %s, device %s", spec.model, spec.task, spec.train, device)

    # Data: read with the same code that validated it at submit time.
    train_examples = family.read_examples(spec.train, spec=spec, side="train")
    if spec.train_limit is not None and spec.train_limit < len(train_examples):
        train_examples = random.Random(spec.seed).sample(train_examples, spec.train_limit)
    eval_examples = family.read_examples(spec.eval, spec=spec, side="eval")
    labels = family.labels_for(train_examples, spec.labels)
    label_names = spec.label_names or labels

    tokenizer = load_tokenizer(spec.model_location, family=spec.family)
    model = load_for_training(spec.model_location, spec.family, label_names)
    train_set = family.train_dataset(train_examples, tokenizer, spec, labels)
    evaluation = family.eval_set(eval_examples, tokenizer, spec, labels)
    ctx.log.info(
        "%d training inputs from %d examples; %d evaluation examples",
        len(train_set),
        len(train_examples),
        evaluation.num_examples,
    )

    score = scorer_for(evaluation, tokenizer, device)

    output_dir = attempt_dir(ctx)
    callback = JobCallback(ctx)
    trainer = ScoringTrainer(
        model=model,
        args=training_arguments(
            output_dir=output_dir, spec=spec, metric_for_best=family.family.main_metric, device=device
        ),
        train_dataset=train_set,
        eval_dataset=evaluation,  # scored by `score`, not by the Trainer's loop
        processing_class=tokenizer,
        data_collator=family.data_collator(tokenizer),
        callbacks=[callback, *extra_callbacks(spec)],
        scorer=score,
    )
    return train_and_save(ctx, trainer, callback, score, tokenizer=tokenizer, spec_values=spec_values, phase="training")
