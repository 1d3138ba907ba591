"""The row of a sweep or comparison: once every trial has ended, the task metric's mean ± std per
(model, setting) across seeds, and the best."""

from __future__ import annotations

from typing import Any

from bertq.families.family import LOWER_IS_BETTER
from bertq.sweeps import SweepSpec, summarise
from bertq.worker.runner import JobContext


def run_sweep(spec_values: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    spec = SweepSpec.from_dict(spec_values)
    values: dict[int, float | None] = {}
    for trial in spec.trials:
        if trial["evaluate"]:  # the first precision's evaluation
            values[trial["evaluate"][0]] = ctx.metrics_of(trial["evaluate"][0]).get(spec.metric)
        else:  # the fine-tune's own evaluation of its best epoch
            values[trial["finetune"]] = ctx.metrics_of(trial["finetune"]).get(f"eval_{spec.metric}")
    summary = summarise(spec.trials, values, maximise=spec.metric not in LOWER_IS_BETTER)
    best = summary["best"]
    for row in summary["settings"]:
        spread = f" ± {row['std']:.4f}" if row["std"] is not None else ""
        ctx.log.info("%s %s: %s %s%s over %d seeds", row["model"], row["setting"], spec.metric,
                     "n/a" if row["mean"] is None else f"{row['mean']:.4f}", spread, row["seeds"])  # fmt: skip
    if best is not None:
        ctx.metrics(
            {f"best_{spec.metric}": best["mean"], **({"best_std": best["std"]} if best["std"] is not None else {})}
        )
    return {"metric": spec.metric, **summary}
