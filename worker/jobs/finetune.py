"""Fine-tune: a pretrained encoder plus a new head for the task, trained with the HF Trainer.

Reads top to bottom: spec, device, data, model, trainer, train (resuming from the last complete
checkpoint of an earlier attempt), evaluate the best model, save it with its spec beside it.
"""

from __future__ import annotations

import shutil
from typing import Any

from transformers import set_seed

from bertq.specs import FinetuneSpec
from bertq.tasks import MAIN_METRIC
from bertq.worker import families
from bertq.worker.inference import run_model
from bertq.worker.loading import best_device, load_for_training, load_tokenizer
from bertq.worker.runner import JobContext
from bertq.worker.training import (
    attempt_dir,
    JobCallback,
    ScoringTrainer,
    raise_if_superseded,
    resume_point,
    save_model_folder,
    training_arguments,
)

EVAL_BATCH_SIZE = 64


def run_finetune(spec_values: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    spec = FinetuneSpec.from_dict(spec_values)
    family = spec.family
    device = best_device()
    set_seed(spec.seed)
    ctx.log.info("fine-tune %s for %s on %s, device %s", spec.model, spec.task, spec.train, device)

    # Data: read with the same code that validated it at submit time.
    train_examples = families.read_examples(family, spec.train, spec=spec, side="train")
    eval_examples = families.read_examples(family, spec.eval, spec=spec, side="eval")
    labels = families.labels_for(family, train_examples, spec.labels)
    label_names = spec.label_names or labels

    tokenizer = load_tokenizer(spec.model_location, family=family)
    model = load_for_training(spec.model_location, family, label_names)
    train_set = families.train_dataset(family, train_examples, tokenizer, spec, labels)
    evaluation = families.eval_set(family, eval_examples, tokenizer, spec, labels)
    ctx.log.info("%d training inputs from %d examples; %d evaluation examples", len(train_set), len(train_examples), evaluation.num_examples)

    def score(current_model: Any) -> dict[str, float]:
        current_model.eval()  # no dropout while scoring; the Trainer switches back to train mode itself
        outputs = run_model(current_model, evaluation.features, pad_id=tokenizer.pad_token_id or 0, device=device,
                            batch_size=EVAL_BATCH_SIZE, outputs=evaluation.outputs)
        return evaluation.score(outputs)

    output_dir = attempt_dir(ctx)
    callback = JobCallback(ctx)
    trainer = ScoringTrainer(
        model=model,
        args=training_arguments(output_dir=output_dir, spec=spec, metric_for_best=MAIN_METRIC[family], device=device),
        train_dataset=train_set,
        eval_dataset=evaluation,  # scored by `score`, not by the Trainer's loop
        processing_class=tokenizer,
        data_collator=families.data_collator(family, tokenizer),
        callbacks=[callback],
        scorer=score,
    )

    resume = resume_point(ctx)
    ctx.progress(0.0, force=True, step=0, total=None, phase="training")
    trainer.train(resume_from_checkpoint=resume)
    raise_if_superseded(ctx)

    # The Trainer reloaded the best epoch's weights. Their numbers were measured when that epoch was
    # evaluated; score again only if that happened in an earlier attempt (a resumed job).
    best = callback.best_evaluation(trainer.state)
    if best is None:
        best = {f"eval_{name}": value for name, value in score(trainer.model).items()}
    ctx.metrics(best, split="eval", step=trainer.state.global_step)

    checkpoint = save_model_folder(ctx=ctx, model=trainer.model, tokenizer=tokenizer, spec=spec_values)
    ctx.artifact("checkpoint", checkpoint)
    shutil.rmtree(ctx.workdir / "attempts", ignore_errors=True)  # intermediate checkpoints: the best is saved above
    ctx.log.info("best model: %s, saved to %s", best, checkpoint)
    return {"checkpoint": str(checkpoint), **best}
