"""What every training job shares: Trainer arguments for the device at hand, and the callback that
reports progress and metrics to the job row and stops training when the attempt is superseded."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback, TrainingArguments

from bertq.errors import AttemptSuperseded, BertqError, Preempted
from bertq.families.family import LOWER_IS_BETTER
from bertq.worker import faults
from bertq.worker.data_parallel import is_main_process, world
from bertq.worker.inference import OutOfMemory, is_out_of_memory
from bertq.worker.loading import gpu_capability, half_precision
from bertq.worker.runner import JobContext

COMPLETE_MARKER = "BERTQ_COMPLETE"
"""Written into a checkpoint folder after everything else: a folder without it is not resumed from."""
RESUME_ARTIFACT = "resume"
"""With an artifact store, each complete checkpoint is uploaded and recorded as this kind of artifact."""


def training_arguments(
    *,
    output_dir: Path,
    spec: Any,
    metric_for_best: str,
    device: str,
    keep_columns: bool = False,
    greater_is_better: bool | None = None,
) -> TrainingArguments:
    """`keep_columns`: pass dataset columns the model does not take (a distillation's teacher_logits)."""
    on_gpu = device == "cuda"
    best_by = getattr(spec, "metric_for_best", None) or metric_for_best
    precision = getattr(spec, "precision", "auto")
    if precision == "auto":  # native bf16 only (Ampere and later); fp16 with the Trainer's loss scaling before
        precision = half_precision(gpu_capability()) if on_gpu else "fp32"
    elif precision == "fp16" and not on_gpu:
        raise BertqError("--precision fp16 trains on a GPU only; on a CPU use bf16 or fp32 (or auto)")
    elif precision == "bf16" and on_gpu and half_precision(gpu_capability()) != "bf16":
        raise BertqError("--precision bf16: this GPU has no native bf16 (before Ampere); use fp16 or auto")
    bf16, fp16 = precision == "bf16", precision == "fp16"
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=spec.epochs,
        max_steps=getattr(spec, "max_steps", None) or -1,
        remove_unused_columns=not keep_columns,
        # Data-parallel ranks share the batch: the same examples per optimiser step as one process.
        per_device_train_batch_size=spec.batch_size // world()[1],
        # transformers 5 multiplies each rank's loss by the number of ranks when this is on, expecting the
        # model to divide by the items of the whole batch; sequence classifiers take the mean of their own
        # batch, so data-parallel runs trained at twice the step (logged loss 1.38 vs 0.69 on one process).
        # Off: every rank's batch is the same size, and DDP's gradient mean is the whole batch's.
        average_tokens_across_devices=False,
        per_device_eval_batch_size=max(spec.batch_size, 64),
        learning_rate=spec.lr,
        weight_decay=getattr(spec, "weight_decay", 0.01),
        warmup_steps=getattr(spec, "warmup_ratio", 0.06),  # below 1: a share of the steps (transformers 5)
        gradient_accumulation_steps=getattr(spec, "grad_accum", 1),
        max_grad_norm=getattr(spec, "max_grad_norm", 1.0),
        lr_scheduler_type="linear",
        seed=spec.seed,
        data_seed=spec.seed,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=None,  # bertq prunes (JobCallback.on_save): never the newest complete checkpoint
        load_best_model_at_end=True,
        metric_for_best_model=best_by,
        greater_is_better=greater_is_better if greater_is_better is not None else best_by not in LOWER_IS_BETTER,
        logging_strategy="steps",
        logging_steps=0.02,  # a ratio of the total steps: about 50 loss points per run
        report_to=[],
        disable_tqdm=True,
        use_cpu=not on_gpu,
        bf16=bf16,
        fp16=fp16,
        dataloader_pin_memory=on_gpu,
        # On a CPU every padded token costs compute: batch inputs of similar length together.
        train_sampling_strategy="random" if on_gpu else "group_by_length",
    )


class ScoringTrainer(Trainer):
    """The HF Trainer, evaluating through bertq's scorer instead of its own eval loop.

    The scorer runs the model over the eval set with length-sorted batches and computes the task's
    metrics (QA needs its windows mapped back to answer spans, which the stock loop cannot do); the
    Trainer still uses the returned `eval_<main metric>` to keep the best epoch."""

    def __init__(self, *args: Any, scorer: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.scorer = scorer
        # Every bertq loss is the mean over its own micro-batch (the heads' cross-entropy, the KD loss):
        # the Trainer must divide it by the accumulation steps. transformers 5 skips that division for
        # models whose forward takes **kwargs, assuming they normalised by the whole batch's item count;
        # the sequence classifiers do not, so 2 x 8 accumulated moved the weights twice as far as 16.
        self.loss_is_scaled_for_ga = False

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):  # type: ignore[no-untyped-def, override]
        started = time.monotonic()
        self.model.eval()  # type: ignore[union-attr]
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in self.scorer(self.model).items()}
        metrics[f"{metric_key_prefix}_runtime"] = round(time.monotonic() - started, 3)
        if self.state.epoch is not None:
            metrics["epoch"] = self.state.epoch
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        self.model.train()  # type: ignore[union-attr]
        return metrics


class JobCallback(TrainerCallback):
    """Progress (step, total, loss, ETA) and per-epoch eval metrics into the database."""

    def __init__(self, ctx: JobContext, *, metric_prefix: str = "eval_", keep: tuple[str, ...] = ()):
        self.ctx = ctx
        self.metric_prefix = metric_prefix
        self.keep = keep
        self.loss: float | None = None
        self.started = time.monotonic()
        self.first_step: int | None = None
        self.evaluations: dict[int, dict[str, float]] = {}
        """Eval metrics by global step, so the best epoch's numbers need not be computed again."""

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if logs and "loss" in logs:
            self.loss = float(logs["loss"])
            self.ctx.metrics({"train_loss": self.loss}, split="train", step=state.global_step, epoch=state.epoch)

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        faults.slow_step()
        faults.kill_rank(self.ctx.attempt, state.global_step)
        if self.ctx.should_stop:
            control.should_training_stop = True
            return
        if self.ctx.preempted:  # the worker is shutting down: save this step, then stop
            control.should_save = True
            control.should_training_stop = True
            return
        if self.first_step is None:
            self.first_step = state.global_step - 1
            self.started = time.monotonic()
        done = state.global_step - self.first_step
        rate = done / max(time.monotonic() - self.started, 1e-6)
        remaining = (state.max_steps - state.global_step) / rate if rate else None
        self.ctx.progress(
            state.global_step / max(state.max_steps, 1),
            force=state.global_step == state.max_steps,
            step=state.global_step,
            total=state.max_steps,
            epoch=round(state.epoch or 0.0, 3),
            loss=self.loss,
            steps_per_second=round(rate, 3),
            eta_seconds=round(remaining) if remaining is not None else None,
        )

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # type: ignore[no-untyped-def]
        if not metrics:
            return
        values = {
            name: float(value)
            for name, value in metrics.items()
            if name.startswith(self.metric_prefix)
            and isinstance(value, (int, float))
            and not name.endswith(("_runtime", "_samples_per_second", "_steps_per_second"))
        }
        self.evaluations[state.global_step] = values
        self.ctx.metrics(values, split="eval", step=state.global_step, epoch=state.epoch)

    def best_evaluation(self, state: Any) -> dict[str, float] | None:
        """The metrics of the checkpoint the Trainer loaded as best, if it evaluated it this attempt."""
        if not state.best_model_checkpoint:
            return None
        step = int(Path(state.best_model_checkpoint).name.removeprefix("checkpoint-"))
        return self.evaluations.get(step)

    def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir() and state.is_world_process_zero:  # data-parallel: rank 0 owns the checkpoints
            faults.kill_in_save(self.ctx.job_id, self.ctx.attempt)
            (folder / COMPLETE_MARKER).write_text(json.dumps({"step": state.global_step, "attempt": self.ctx.attempt}))
            prune_checkpoints(Path(args.output_dir), keep=[folder, Path(state.best_model_checkpoint or folder)])
            if self.ctx.settings.artifact_store:  # another machine can resume from it: no disk is shared
                self.ctx.artifact(RESUME_ARTIFACT, folder)


def extra_callbacks(spec: Any) -> list[Any]:
    """Callbacks a spec's knobs ask for: early stopping after `early_stopping` evaluations without
    improvement of the metric that picks the best epoch."""
    from transformers import EarlyStoppingCallback

    patience = getattr(spec, "early_stopping", 0)
    return [EarlyStoppingCallback(early_stopping_patience=patience)] if patience else []


def prune_checkpoints(output_dir: Path, *, keep: list[Path]) -> None:
    """Remove this attempt's checkpoints other than `keep` (the newest complete one, the best one).
    Only called once the newest has its marker, so a save cut short never costs the last good one."""
    kept = {path.resolve() for path in keep}
    for folder in output_dir.glob("checkpoint-*"):
        if folder.resolve() not in kept:
            shutil.rmtree(folder, ignore_errors=True)


def attempt_dir(ctx: JobContext) -> Path:
    """Where this attempt's Trainer writes: its own folder, so a stale attempt that wakes up (SIGSTOP,
    a network partition) never writes into the checkpoints the current attempt resumes from."""
    return ctx.workdir / "attempts" / str(ctx.attempt)


def last_complete_checkpoint(attempts_root: Path) -> Path | None:
    """The newest Trainer checkpoint of any attempt that was saved completely (it carries the marker)."""
    candidates = []
    for folder in attempts_root.glob("*/checkpoint-*"):
        suffix = folder.name.removeprefix("checkpoint-")
        if suffix.isdigit() and (folder / COMPLETE_MARKER).is_file():
            candidates.append((int(suffix), folder))
    return max(candidates)[1] if candidates else None


def resume_point(ctx: JobContext) -> str | None:
    """The checkpoint an earlier attempt left complete, if any: on this machine's disk, or (with an
    artifact store) the newest one any machine uploaded, whichever is further on. The attempt records
    it (so the resume shows in `bertq show`), and the metric rows written after it are removed: this
    attempt writes them again, so none is counted twice."""
    checkpoint = last_complete_checkpoint(ctx.workdir / "attempts")
    stored = ctx.artifact_of(ctx.job_id, RESUME_ARTIFACT) if ctx.settings.artifact_store else None
    if stored and (Path(stored) / COMPLETE_MARKER).is_file() and _step(Path(stored)) > _step(checkpoint):
        checkpoint = Path(stored)
    if checkpoint is None:
        if ctx.attempt > 1:  # an earlier attempt logged steps before its first checkpoint: logged again now
            forget_metrics_after(ctx, None)
        return None
    ctx.resumed_from(str(checkpoint))
    forget_metrics_after(ctx, checkpoint)
    ctx.log.info("attempt %s resumes from %s", ctx.attempt, checkpoint)
    return str(checkpoint)


def _step(checkpoint: Path | None) -> int:
    return int(checkpoint.name.removeprefix("checkpoint-")) if checkpoint else -1


def forget_metrics_after(ctx: JobContext, checkpoint: Path | None) -> None:
    """Remove the metric rows logged after `checkpoint` (all stepped ones when None): training
    starts again from there and logs them again."""
    ctx.forget_metrics_after(int(checkpoint.name.removeprefix("checkpoint-")) if checkpoint else 0)


def train_backing_off(ctx: JobContext, trainer: Any, resume: str | None) -> None:
    """`trainer.train`, and on out-of-memory again with half the batch and twice the gradient
    accumulation (the same examples per optimiser step), from the last complete checkpoint or the
    starting weights. Out of memory at a batch of one fails the job with what to change."""
    starting_weights = {name: value.detach().to("cpu", copy=True) for name, value in trainer.model.state_dict().items()}
    while True:
        try:
            trainer.train(resume_from_checkpoint=resume)
            return
        except Exception as error:  # noqa: BLE001 - only out-of-memory is handled here
            if isinstance(error, OutOfMemory) or not is_out_of_memory(error):
                raise  # OutOfMemory: evaluation could not fit one input; a smaller training batch cannot help
            size, accumulation = trainer.args.per_device_train_batch_size, trainer.args.gradient_accumulation_steps
            if size <= 1:
                raise BertqError(
                    f"out of memory while training with a batch of 1 ({error}); lower --max-length, "
                    "train a smaller model, or run on a device with more memory"
                ) from error
            _free_memory(trainer)
            factor = smallest_factor(size)  # the same examples per optimiser step, also for odd sizes
            trainer.args.per_device_train_batch_size = size // factor
            trainer.args.gradient_accumulation_steps = accumulation * factor
            trainer._train_batch_size = trainer.args.train_batch_size
            trainer.create_accelerator_and_postprocess()  # its gradient accumulation follows the args
            checkpoint = last_complete_checkpoint(ctx.workdir / "attempts")
            if checkpoint is None:
                trainer.model.load_state_dict(starting_weights)
            forget_metrics_after(ctx, checkpoint)
            resume = str(checkpoint) if checkpoint else None
            ctx.log.warning(
                "out of memory with a batch of %d; going on with %d x %d gradient accumulation from %s",
                size,
                size // factor,
                accumulation * factor,
                checkpoint or "the starting weights",
            )
            ctx.progress(
                0.0,
                force=True,
                phase="training",
                batch_size=size // factor,
                gradient_accumulation=accumulation * factor,
                out_of_memory_at=size,
            )


def smallest_factor(number: int) -> int:
    """The smallest prime factor of `number` (2 or more): 16 -> 2, 15 -> 3, 7 -> 7."""
    return next(f for f in range(2, number + 1) if number % f == 0)


def _free_memory(trainer: Any) -> None:
    import gc

    import torch

    trainer.optimizer = None
    trainer.lr_scheduler = None
    trainer.model_wrapped = trainer.model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def raise_if_superseded(ctx: JobContext) -> None:
    """After training: stop here if the attempt was superseded, or checkpointed for a shutdown."""
    if ctx.should_stop:
        raise AttemptSuperseded(f"job {ctx.job_id}: attempt {ctx.attempt} stopped: superseded or cancelled")
    if ctx.preempted:
        raise Preempted(f"job {ctx.job_id}: attempt {ctx.attempt} saved a checkpoint for the worker's shutdown")


def save_model_folder(*, ctx: JobContext, model: Any, tokenizer: Any, spec: dict[str, Any]) -> Path:
    """Weights (safetensors), tokenizer, label names (in config.json) and the resolved spec, written
    to this attempt's temporary folder and moved into place (`checkpoint`) only while the attempt is
    current, so a reader never sees half a checkpoint nor a stale attempt's one."""
    folder = ctx.workdir / "checkpoint"
    partial = ctx.workdir / f".checkpoint.attempt-{ctx.attempt}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    (partial / "bertq_spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True))
    ctx.write()  # still the current attempt? (raises AttemptSuperseded if not)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def scorer_for(evaluation: Any, tokenizer: Any, device: str, batch_size: int = 64) -> Any:
    """The task metrics of a model on an EvalSet, through the fast inference path (no dropout)."""
    from bertq.worker.inference import run_model

    def score(model: Any) -> dict[str, float]:
        model.eval()  # the Trainer switches back to train mode itself
        outputs = run_model(
            model,
            evaluation.features,
            pad_id=tokenizer.pad_token_id or 0,
            device=device,
            batch_size=batch_size,
            outputs=evaluation.outputs,
        )
        return evaluation.score(outputs)

    return score


def train_and_save(
    ctx: JobContext,
    trainer: Any,
    callback: JobCallback,
    score: Any,
    *,
    tokenizer: Any,
    spec_values: dict[str, Any],
    phase: str,
) -> dict[str, Any]:
    """Train (resuming from an earlier attempt's last complete checkpoint), record the best epoch's
    metrics, publish its model as the job's checkpoint, drop the intermediate checkpoints."""
    resume = resume_point(ctx)
    ctx.progress(0.0, force=True, step=0, total=None, phase=phase)
    train_backing_off(ctx, trainer, resume)
    raise_if_superseded(ctx)
    if not is_main_process():  # a data-parallel rank other than 0: rank 0 scores, saves and reports
        return {}
    # The Trainer reloaded the best epoch's weights. Their numbers were measured when that epoch was
    # evaluated; score again only if that happened in an earlier attempt (a resumed job).
    best = callback.best_evaluation(trainer.state)
    if best is None:
        best = {f"eval_{name}": value for name, value in score(trainer.model).items()}
    ctx.metrics(best, split="eval", step=trainer.state.global_step)
    checkpoint = save_model_folder(ctx=ctx, model=trainer.model, tokenizer=tokenizer, spec=spec_values)
    ctx.artifact("checkpoint", checkpoint)
    shutil.rmtree(ctx.workdir / "attempts", ignore_errors=True)  # intermediate checkpoints
    ctx.log.info("best model: %s, saved to %s", best, checkpoint)
    runtime = next(
        (float(e["train_runtime"]) for e in reversed(trainer.state.log_history) if "train_runtime" in e), None
    )
    return {
        "checkpoint": str(checkpoint),
        "train_runtime_s": runtime,
        "train_examples": len(trainer.train_dataset) if trainer.train_dataset is not None else None,
        "train_batch_size": trainer.args.per_device_train_batch_size,
        "precision": "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "fp32",
        "training": {  # what the Trainer ran with (the knobs, resolved)
            "warmup_ratio": trainer.args.warmup_steps,
            "weight_decay": trainer.args.weight_decay,
            "max_grad_norm": trainer.args.max_grad_norm,
            "metric_for_best": trainer.args.metric_for_best_model,
            "early_stopping": next(
                (
                    c.early_stopping_patience
                    for c in trainer.callback_handler.callbacks
                    if hasattr(c, "early_stopping_patience")
                ),
                0,
            ),
            "epochs_run": round(trainer.state.epoch or 0.0, 3),
        },
        "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps,
        **best,
    }
