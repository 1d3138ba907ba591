"""`bertq submit sweep` and `bertq submit compare`: groups of fine-tune trials (bertq.sweeps)."""

from __future__ import annotations

from typing import Any

import click

from bertq.cli.submit import (
    _knob_options,
    _loading_options,
    _pick_queue,
    _queue_options,
    _report_submitted,
    _trained_model,
    _validated,
    spec_option,
    submit,
)
from bertq.families import presets_help
from bertq.specs import FinetuneSpec

GRID_HELP = (
    "A setting to vary: NAME=v1,v2 (every combination of the --grid lists is tried) or NAME=low:high "
    "(with --random N). NAME: lr, epochs, batch_size, warmup_ratio, weight_decay, max_length, grad_accum, "
    "max_grad_norm, train_limit (training-set size, for a learning curve). Repeatable."
)


def _trial_options(command: Any) -> Any:
    """The options every trial of a sweep or comparison shares: data, training, grid and seeds."""
    options = [
        click.option("--task", default=None, help=f"{presets_help()} [default: sst2]."),
        click.option("--train", default=None, help="Training data [default: the task's Hub dataset]."),
        click.option(
            "--eval",
            "eval_",
            default=None,
            help="Evaluation data. Required with your own --train; without it, the task's Hub validation split.",
        ),
        click.option("--text-column", default=None),
        click.option("--label-column", default=None),
        click.option("--text-pair-column", default=None),
        spec_option(FinetuneSpec, "epochs", type=float),
        spec_option(FinetuneSpec, "batch_size", type=int),
        spec_option(FinetuneSpec, "lr", type=float),
        click.option("--max-length", type=int, default=None, help="Truncate inputs at this many tokens [128]."),
        spec_option(FinetuneSpec, "seed", type=int, help="The first seed; --seeds N uses seed, seed+1, ..."),
        click.option("--grid", "grid", multiple=True, help=GRID_HELP),
        click.option("--random", "random_count", type=int, default=None, help="Draw N settings from the ranges."),
        click.option("--seeds", type=int, default=1, show_default=True, help="Seeds per setting (mean ± std)."),
        click.option(
            "--max-parallel", type=int, default=None, help="At most this many trials train at once [no limit]."
        ),
        _knob_options,
        _loading_options,
        _queue_options,
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _plan(
    models: list[str],
    *,
    kind: str,
    precisions: list[str],
    evaluate: bool,
    queue: str,
    command: dict[str, Any],
) -> list[Any]:
    """The plan of a sweep (one model) or comparison (several): every problem of the seeds, the grid
    and each model's fine-tune options at once, then `bertq.sweeps.plan_sweep`."""
    from bertq.errors import SpecError
    from bertq.families import get_family
    from bertq.specs import build_finetune_spec
    from bertq.sweeps import check_setting, parse_grid, plan_sweep

    grid, random_count, seeds, max_parallel = (command[k] for k in ("grid", "random_count", "seeds", "max_parallel"))
    options = _options(command)
    problems: list[str] = []
    if seeds < 1:
        problems.append(f"--seeds {seeds}: train each setting at least once")
    if max_parallel is not None and max_parallel < 1:
        problems.append(f"--max-parallel {max_parallel}: let at least 1 trial run")
    settings: list[dict[str, Any]] = []
    try:
        settings = parse_grid(list(grid), random_count=random_count, seed=options["seed"])
    except SpecError as error:
        problems.extend(error.problems)
    bases = []
    for model in models:
        try:
            bases.append(build_finetune_spec(model=_trained_model(model), evaluate=False, **options))
        except SpecError as error:
            problems.extend(f"--model {model}: {p}" if len(models) > 1 else p for p in error.problems)
    for setting in settings:
        problems.extend(check_setting(setting))
    if problems:
        raise SpecError(problems)
    metric = get_family(bases[0].family).main_metric
    return plan_sweep(
        bases,
        settings,
        seeds=[options["seed"] + i for i in range(seeds)],
        queue=queue,
        priority=command["priority"],
        evaluate=evaluate,
        precisions=precisions,
        max_parallel=max_parallel,
        metric=metric,
        kind=kind,
    )


def _submit_group(kind: str, plan_for: Any, command: dict[str, Any]) -> None:
    """Check and submit the group `plan_for(queue)` builds, with the command's queue options."""
    from bertq.db.submit import submit_plan

    queue = _pick_queue(command["queue"])
    plan = _validated(queue, command["priority"], lambda: plan_for(queue))
    ids = submit_plan(plan)
    trials = sum(1 for job in plan if job.kind == "finetune")
    summary = f"; {trials} trials (jobs {ids[1]}..{ids[-1]})"
    _report_submitted(ids[0], kind, queue, command["wait"], command["as_json"], summary)


def _options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The fine-tune options of a trial, from the command's keyword arguments."""
    return {
        "task": kwargs["task"],
        "train": kwargs["train"],
        "eval": kwargs["eval_"],
        "text_column": kwargs["text_column"],
        "label_column": kwargs["label_column"],
        "text_pair_column": kwargs["text_pair_column"],
        "epochs": kwargs["epochs"],
        "batch_size": kwargs["batch_size"],
        "lr": kwargs["lr"],
        "max_length": kwargs["max_length"],
        "seed": kwargs["seed"],
        "trust_remote_code": kwargs["trust_remote_code"],
        "allow_pickle": kwargs["allow_pickle"],
        "knobs": kwargs["knobs"],
    }


@submit.command("sweep")
@click.option("--model", required=True, help="Alias (bertq models), hub id, folder, or a finished job's id.")
@_trial_options
@click.option(
    "--evaluate/--no-evaluate",
    default=True,
    show_default=True,
    help="Evaluate each trial's best checkpoint (task metric, size, latency) [else: its fine-tune's eval].",
)
def submit_sweep(model: str, evaluate: bool, **kwargs: Any) -> None:
    """Fine-tune MODEL over a grid (or random draws) of settings with several seeds; summarises mean ± std per setting."""
    _submit_group(
        "sweep",
        lambda queue: _plan([model], kind="sweep", precisions=["fp32"], evaluate=evaluate, queue=queue, command=kwargs),
        kwargs,
    )


@submit.command("compare")
@click.option("--models", required=True, help="Comma-separated models (aliases, hub ids, folders, job ids).")
@_trial_options
@click.option(
    "--precisions",
    default="fp32,int8",
    show_default=True,
    help="Evaluate each trial at these precisions (int8 runs on the CPU; bf16/fp16 on a GPU worker).",
)
def submit_compare(models: str, precisions: str, **kwargs: Any) -> None:
    """Fine-tune and evaluate several models alike (optionally swept, with seeds); then `bertq report --task T`."""
    from bertq.errors import SpecError
    from bertq.specs import PRECISIONS

    names = [m.strip() for m in models.split(",") if m.strip()]
    chosen = [p.strip() for p in precisions.split(",") if p.strip()]

    def plan_for(queue: str) -> list[Any]:
        problems = [f"--precisions {p!r}: choose from {', '.join(PRECISIONS)}" for p in chosen if p not in PRECISIONS]
        if len(names) < 2:
            problems.append("--models: give two or more models to compare, comma-separated")
        if problems:
            raise SpecError(problems)
        return _plan(names, kind="compare", precisions=chosen, evaluate=True, queue=queue, command=kwargs)

    _submit_group("compare", plan_for, kwargs)
