"""`bertq submit sweep` and `bertq submit compare`: job groups of fine-tune trials.

    sweep row (summary: mean ± std per setting, the best) <- trial x (settings x seeds):
        finetune -> evaluate

A sweep expands a grid (`--grid lr=1e-5,3e-5 --grid epochs=2,3`) or `--random N` draws from ranges
(`--grid lr=1e-5:1e-4`) into settings, each trained with `--seeds` seeds. Every trial is an
ordinary fine-tune job (and its evaluate job), so it is claimed once, resumes from its checkpoint
when its worker dies, and is never re-run once finished; cancelling the sweep cancels every trial
that has not ended. `--max-parallel P` chains trial i after trial i - P, so at most P run at once.

A comparison is a sweep per model under one row, evaluated at the precisions given; the report
(`bertq report --task T`) then decides between them. Standard library and the spec modules only.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

from bertq.errors import SpecError
from bertq.plan import PlannedJob
from bertq.specs import EvaluateSpec, FinetuneSpec, _Spec, evaluate_after_finetune

SWEEPABLE = {
    "lr": float,
    "epochs": float,
    "batch_size": int,
    "warmup_ratio": float,
    "weight_decay": float,
    "max_length": int,
    "grad_accum": int,
    "max_grad_norm": float,
    "train_limit": int,
}
"""Fine-tune settings a sweep may vary (`train_limit`: training-set size, for a learning curve)."""
LOG_SCALE = ("lr",)
"""Ranges drawn on a log scale by `--random`."""


@dataclass(frozen=True)
class SweepSpec(_Spec):
    """The sweep's (or comparison's) own row: what was swept and which jobs are its trials."""

    task: str
    family: str
    models: list[str]
    """The model of each sweep (one for a sweep, several for a comparison)."""
    settings: list[dict[str, Any]]
    """The settings tried, each a dict of the swept fields."""
    seeds: list[int]
    trials: list[dict[str, Any]] = field(default_factory=list)
    """Filled in when planned: per trial its model, setting, seed, fine-tune job and evaluate jobs."""
    metric: str = ""
    """The task metric the summary ranks by (the family's main metric)."""
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    max_parallel: int | None = None


def parse_grid(values: list[str], *, random_count: int | None, seed: int) -> list[dict[str, Any]]:
    """`name=a,b,c` lists (a grid: every combination) or `name=low:high` ranges (with `random_count`:
    that many settings drawn from them, lr on a log scale)."""
    problems: list[str] = []
    lists: dict[str, list[Any]] = {}
    ranges: dict[str, tuple[float, float]] = {}
    for value in values:
        name, _, given = value.partition("=")
        name = name.strip().replace("-", "_")
        if name not in SWEEPABLE:
            problems.append(f"--grid {value!r}: cannot sweep {name!r}; choose from {', '.join(SWEEPABLE)}")
            continue
        kind = SWEEPABLE[name]
        try:
            if ":" in given:
                low, high = (float(part) for part in given.split(":", 1))
                if not 0 < low < high:
                    raise ValueError
                ranges[name] = (low, high)
            else:
                lists[name] = [kind(float(part)) if kind is int else kind(part) for part in given.split(",") if part]
                if not lists[name]:
                    raise ValueError
        except ValueError:
            problems.append(
                f"--grid {value!r}: give {name}=v1,v2,... (a grid) or {name}=low:high with 0 < low < high (with --random N)"
            )
    if ranges and not random_count:
        problems.append(f"--grid {', '.join(ranges)} given as ranges: add --random N to draw N settings from them")
    if random_count is not None and random_count < 1:
        problems.append(f"--random {random_count}: draw at least 1 setting")
    if problems:
        raise SpecError(problems)
    combos = [dict(zip(lists, chosen)) for chosen in itertools.product(*lists.values())] or [{}]
    if not ranges:
        return combos
    draw = random.Random(seed)
    settings = []
    for index in range(random_count or 0):
        setting = dict(combos[index % len(combos)])
        for name, (low, high) in ranges.items():
            if name in LOG_SCALE:
                number = math.exp(draw.uniform(math.log(low), math.log(high)))
            else:
                number = draw.uniform(low, high)
            setting[name] = SWEEPABLE[name](round(number)) if SWEEPABLE[name] is int else float(f"{number:.3g}")
        settings.append(setting)
    return settings


def check_setting(setting: dict[str, Any]) -> list[str]:
    """Problems of one setting's numbers (out of range), each naming the setting."""
    from bertq.specs import _check_numbers

    problems: list[str] = []
    numbers = {k: v for k, v in setting.items() if k in ("epochs", "batch_size", "lr", "max_length")}
    _check_numbers(problems, **numbers)
    if setting.get("train_limit") is not None and setting["train_limit"] < 1:
        problems.append(f"--grid train_limit={setting['train_limit']}: train on at least 1 example")
    return [f"setting {setting}: {p}" for p in problems]


def plan_sweep(
    bases: list[FinetuneSpec],
    settings: list[dict[str, Any]],
    *,
    seeds: list[int],
    queue: str,
    priority: int,
    evaluate: bool = True,
    precisions: list[str] | None = None,
    max_parallel: int | None = None,
    metric: str,
    kind: str = "sweep",
) -> list[PlannedJob]:
    """The group's row first (it runs last, as the summary), then per trial its fine-tune and (with
    `evaluate`) one evaluate job per precision."""
    precisions = precisions or ["fp32"]
    plan: list[PlannedJob] = [PlannedJob(kind, {}, queue, priority)]
    trials: list[dict[str, Any]] = []
    finetunes: list[int] = []
    ends: list[int] = []
    for base in bases:
        for setting in settings:
            for seed in seeds:
                spec = replace(base, **setting, seed=seed, evaluate=False)
                after = [finetunes[-max_parallel]] if max_parallel and len(finetunes) >= max_parallel else []
                plan.append(PlannedJob("finetune", spec.to_dict(), queue, priority, after=after, parent=0))
                index = len(plan) - 1
                finetunes.append(index)
                evaluations = []
                for precision in precisions if evaluate else []:
                    plan.append(
                        PlannedJob(
                            "evaluate",
                            _evaluation(spec, index, precision),
                            queue,
                            priority,
                            after=[index],
                            parent=0,
                        )
                    )
                    evaluations.append(len(plan) - 1)
                ends.extend(evaluations or [index])
                trials.append(
                    {"model": base.model, "setting": setting, "seed": seed, "finetune": index, "evaluate": evaluations}
                )
    summary = SweepSpec(
        task=bases[0].task,
        family=bases[0].family,
        models=[b.model for b in bases],
        settings=settings,
        seeds=seeds,
        metric=metric,
        precisions=precisions if evaluate else [],
        max_parallel=max_parallel,
    )

    def filled(ids: list[int]) -> dict[str, Any]:
        resolved = [{**t, "finetune": ids[t["finetune"]], "evaluate": [ids[i] for i in t["evaluate"]]} for t in trials]
        return replace(summary, trials=resolved).to_dict()

    plan[0] = PlannedJob(kind, filled, queue, priority, after=ends)
    return plan


def _evaluation(spec: FinetuneSpec, index: int, precision: str) -> Any:
    def build(ids: list[int]) -> dict[str, Any]:
        evaluation: EvaluateSpec = evaluate_after_finetune(spec, job_id=ids[index], device="auto")
        return replace(evaluation, precision=precision, device="cpu" if precision == "int8" else "auto").to_dict()

    return build


def summarise(
    trials: list[dict[str, Any]], values: dict[int, float | None], *, maximise: bool = True
) -> dict[str, Any]:
    """Per (model, setting): the metric's mean, std across seeds and count; the best by mean. `values`
    maps each trial's scoring job (its first evaluate, else its fine-tune) to the metric."""
    groups: dict[str, dict[str, Any]] = {}
    for trial in trials:
        job = (trial["evaluate"] or [trial["finetune"]])[0]
        key = f"{trial['model']} {trial['setting']}"
        group = groups.setdefault(key, {"model": trial["model"], "setting": trial["setting"], "values": [], "jobs": []})
        group["jobs"].append(job)
        if values.get(job) is not None:
            group["values"].append(values[job])
    rows = []
    for group in groups.values():
        numbers = group.pop("values")
        mean = sum(numbers) / len(numbers) if numbers else None
        std = (
            math.sqrt(sum((x - mean) ** 2 for x in numbers) / (len(numbers) - 1))
            if mean is not None and len(numbers) > 1
            else None
        )
        rows.append({**group, "mean": mean, "std": std, "seeds": len(numbers), "values": numbers})
    scored = [r for r in rows if r["mean"] is not None]
    best = max(scored, key=lambda r: r["mean"] if maximise else -r["mean"]) if scored else None
    return {"settings": rows, "best": best}
