"""Deployment scenarios and how a winner is chosen, from measured numbers only.

A scenario is an objective (maximise a metric, or minimise `-metric`) under constraints
(`max_<metric>`, `min_<metric>`, `within_best_task_metric`) and optional filters (device, task,
precision). Candidates measured on different devices are never ranked together: a scenario is
decided separately for each device the candidates were measured on.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bertq.errors import SpecError
from bertq.families.classification import learned_nothing

FILTERS = ("device", "task", "precision", "family")
TIE_BREAK = "lower p95 latency, then smaller weights, then the older job"
"""How candidates with the same objective value (or a win within one std) are ordered."""

NEXT_STEPS = {
    "size_mb": "distil a smaller student (bertq submit distill --student teacher --student-layers 3) or "
    "evaluate --precision int8",
    "latency_p95_ms": "evaluate a distilled student, --precision int8 (CPU) or bf16, or a GPU",
    "latency_p50_ms": "evaluate a distilled student, --precision int8 (CPU) or bf16, or a GPU",
    "peak_memory_above_runtime_mb": "evaluate an ALBERT (shared layers) or a distilled student, or --precision int8",
    "peak_memory_mb": "evaluate an ALBERT (shared layers) or a distilled student, or --precision int8",
    "domain_pretrained": "continue pre-training on your domain's text (bertq submit pretrain --corpus ...), then "
    "fine-tune and evaluate that job's model",
    "train_examples": "fine-tune on fewer than 1,000 labelled examples (a subset of --train) and evaluate, to see "
    "which model copes with few labels",
    "languages": "evaluate a multilingual model (xlm-roberta-base) on data in two or more languages",
    "task_metric_std": "fine-tune with 2 or more seeds (--seed) and evaluate each, to measure the spread",
    "task_metric": "train longer or a larger model, and evaluate it",
}
"""What to try when no candidate meets a scenario, by the metric of the constraint that failed."""
FILTER_STEPS = {"family": {"regression": "fine-tune on a similarity task (--task stsb) and evaluate it"}}


@dataclass(frozen=True)
class Candidate:
    """One evaluated (model, precision, device), with its metrics under the evaluate job's names."""

    job_id: int
    model: str
    precision: str
    device: str
    device_name: str
    task: str
    metrics: dict[str, float]
    lineage: dict[str, Any] = field(default_factory=dict)
    data: str = ""
    """The evaluation data: candidates are ranked only against others of the same task and data."""
    family: str = ""
    seeds: int = 1
    """Seeds of one setting merged into this candidate (metrics are their mean)."""
    members: list[int] = field(default_factory=list)
    """The evaluate jobs merged, with several seeds."""
    regression: dict[str, Any] | None = None
    """An earlier evaluation of the same model, data and precision that scored better."""
    conditions: dict[str, float] = field(default_factory=dict)
    """How busy the machine was while measuring (machine_load, cpu_share)."""

    def value(self, metric: str) -> float | None:
        if metric == "task_metric_per_mb":
            task, size = self.metrics.get("task_metric"), self.metrics.get("size_mb")
            return task / size if task is not None and size else None
        return self.metrics.get(metric)

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "model": self.model,
            "precision": self.precision,
            "device": self.device,
            "device_name": self.device_name,
            "task": self.task,
            **self.metrics,
            "seeds": self.seeds,
            **({"merged_jobs": self.members} if self.members else {}),
            **({"regression": self.regression} if self.regression else {}),
            **self.conditions,
            "lineage": {k: v for k, v in self.lineage.items() if k != "setting"},
        }


@dataclass(frozen=True)
class Scenario:
    name: str
    objective: str
    limits: dict[str, float] = field(default_factory=dict)
    """`max_x` / `min_x` -> bound."""
    within_best: float | None = None
    filters: dict[str, str] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return self.objective.removeprefix("-")

    @property
    def maximise(self) -> bool:
        return not self.objective.startswith("-")

    def constraints(self) -> dict[str, Any]:
        described: dict[str, Any] = dict(self.limits)
        if self.within_best is not None:
            described["within_best_task_metric"] = self.within_best
        return {**described, **self.filters}


def load_scenarios(path: Path | None = None) -> list[Scenario]:
    """The scenarios of a TOML file (`[[scenario]]` tables), or bertq's defaults."""
    text = path.read_text() if path else resources.files("bertq.report").joinpath("default_scenarios.toml").read_text()
    where = str(path) if path else "the default scenarios"
    try:
        tables = tomllib.loads(text).get("scenario", [])
    except tomllib.TOMLDecodeError as error:
        raise SpecError([f"{where}: not valid TOML ({error})"]) from error
    problems: list[str] = []
    scenarios = []
    for number, table in enumerate(tables, start=1):
        name = table.get("name") or f"scenario {number}"
        objective = table.get("objective")
        if not isinstance(objective, str) or not objective.strip("-"):
            problems.append(f'{where}: [[scenario]] {name!r} needs objective = "metric" or "-metric"')
            continue
        limits, filters, within = {}, {}, None
        for key, value in table.items():
            if key in ("name", "objective"):
                continue
            if key in FILTERS:
                filters[key] = str(value)
            elif key == "within_best_task_metric" and isinstance(value, (int, float)):
                within = float(value)
            elif key.startswith(("max_", "min_")) and isinstance(value, (int, float)) and not isinstance(value, bool):
                limits[key] = float(value)
            else:
                problems.append(
                    f"{where}: [[scenario]] {name!r}: unknown key {key!r} (use max_<metric>, min_<metric>, "
                    f"within_best_task_metric, {', '.join(FILTERS)})"
                )
        scenarios.append(Scenario(name=name, objective=objective, limits=limits, within_best=within, filters=filters))
    if problems:
        raise SpecError(problems)
    if not scenarios:
        raise SpecError([f"{where}: no [[scenario]] tables"])
    return scenarios


@dataclass(frozen=True)
class Decision:
    scenario: Scenario
    device: str
    """The device (name), and with several tasks or data sets, which: `H200, sst2 on dev.tsv`."""
    """The device (name) the ranked candidates were measured on."""
    winner: Candidate | None
    runner_up: Candidate | None
    nearest_miss: Candidate | None
    miss_by: dict[str, float]
    """For the nearest miss: constraint -> how far past the bound it is."""
    qualified: int
    considered: int
    reason: str
    tie: bool = False
    """The winner's lead over the runner-up is within one standard deviation across seeds."""
    next_step: str | None = None
    """What to try when no candidate meets the scenario."""

    def as_dict(self) -> dict[str, Any]:
        def candidate(c: Candidate | None) -> dict[str, Any] | None:
            return c.as_dict() if c else None

        return {
            "name": self.scenario.name,
            "device": self.device,
            "constraints": self.scenario.constraints(),
            "objective": self.scenario.objective,
            "winner": candidate(self.winner),
            "runner_up": candidate(self.runner_up),
            "nearest_miss": candidate(self.nearest_miss),
            "miss_by": self.miss_by or None,
            "reason": self.reason,
            "tie": self.tie,
            "next_step": self.next_step,
        }


def _violations(candidate: Candidate, scenario: Scenario, best_task: float | None) -> dict[str, float] | None:
    """Constraint -> relative excess over its bound (0 when met); None if a needed number is missing."""
    excess: dict[str, float] = {}
    for key, bound in scenario.limits.items():
        value = candidate.value(key[4:])
        if value is None:
            return None
        over = value - bound if key.startswith("max_") else bound - value
        excess[key] = max(0.0, over) / (abs(bound) or 1.0)
    if scenario.within_best is not None and best_task is not None:
        task = candidate.value("task_metric")
        if task is None:
            return None
        excess["within_best_task_metric"] = max(0.0, best_task - scenario.within_best - task)
    return excess


def _rank_key(candidate: Candidate, scenario: Scenario) -> tuple:
    """Objective first; ties broken by TIE_BREAK: lower p95 latency, then smaller size, then the older job."""
    value = candidate.value(scenario.metric) or 0.0
    latency = candidate.value("latency_p95_ms")
    size = candidate.value("size_mb")
    return (
        -value if scenario.maximise else value,
        latency if latency is not None else float("inf"),
        size if size is not None else float("inf"),
        candidate.job_id,
    )


def decide(scenario: Scenario, candidates: list[Candidate]) -> list[Decision]:
    """One decision per device, task and evaluation data the scenario's candidates were measured on:
    an entity F1 on CoNLL never outranks an accuracy on SST-2, nor a GPU's latency a CPU's."""
    pool = [c for c in candidates if all(getattr(c, key) == value for key, value in scenario.filters.items())]
    groups = sorted({(c.device_name, c.task, c.data) for c in pool})
    several = len({(task, data) for _, task, data in groups}) > 1
    if not groups:
        return [_decide_on(scenario, [], "(no candidates)")]
    return [
        _decide_on(
            scenario,
            [c for c in pool if (c.device_name, c.task, c.data) == (device, task, data)],
            f"{device}, {task} on {data.rsplit('/', 1)[-1] or '?'}" if several else device,
        )
        for device, task, data in groups
    ]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _decide_on(scenario: Scenario, pool: list[Candidate], device: str) -> Decision:
    # A classifier no better than always answering the most common label wins nothing, even where its
    # numbers would (the steadiest across seeds, the fastest): it is listed with a warning instead.
    useless = [c for c in pool if learned_nothing(c.metrics)]
    measured = [c for c in pool if c.value(scenario.metric) is not None and c not in useless]
    tasks = [value for c in measured if (value := c.value("task_metric")) is not None]
    best_task = max(tasks) if tasks else None
    qualified: list[tuple[Candidate, dict[str, Any]]] = []
    missed: list[tuple[Candidate, dict[str, Any]]] = []
    for candidate in measured:
        excess = _violations(candidate, scenario, best_task)
        if excess is None:
            continue  # a constraint's number was never measured: no recommendation without it
        (qualified if not any(excess.values()) else missed).append((candidate, excess))
    ranked = sorted((c for c, _ in qualified), key=lambda c: _rank_key(c, scenario))
    winner = ranked[0] if ranked else None
    runner_up = ranked[1] if len(ranked) > 1 else None
    nearest, miss_by = None, dict[str, Any]()
    if missed:
        nearest, excess = min(missed, key=lambda pair: (sum(pair[1].values()), _rank_key(pair[0], scenario)))
        miss_by = {}
        for key, relative in excess.items():
            if relative > 0 and key.startswith(("max_", "min_")):
                miss_by[key] = round(abs((nearest.value(key[4:]) or 0.0) - scenario.limits[key]), 6)
            elif relative > 0:
                miss_by[key] = round(relative, 6)
    verb = "highest" if scenario.maximise else "lowest"
    constraints = ", ".join(
        f"{_words(k[4:])} {'<=' if k.startswith('max_') else '>='} {_with_unit(k[4:], v)}"
        for k, v in scenario.limits.items()
    )
    if scenario.within_best is not None:
        constraints = ", ".join(
            filter(None, [constraints, f"task metric within {scenario.within_best:g} of the best ({_fmt(best_task)})"])
        )
    tie = False
    if winner is not None and runner_up is not None and scenario.metric == "task_metric":
        spread = max(winner.value("task_metric_std") or 0.0, runner_up.value("task_metric_std") or 0.0)
        lead = abs((winner.value("task_metric") or 0.0) - (runner_up.value("task_metric") or 0.0))
        tie = spread > 0 and lead <= spread
    if winner is not None:
        reason = (
            f"{verb} {_words(scenario.metric)} ({_fmt_spread(winner, scenario.metric)}) among "
            f"{_count(len(ranked), 'candidate')} of {len(pool)}{' meeting ' + constraints if constraints else ''}"
        )
        if tie and runner_up is not None:
            reason = (
                f"a tie: {winner.model} ({_fmt_spread(winner, 'task_metric')}) and {runner_up.model} "
                f"({_fmt_spread(runner_up, 'task_metric')}) differ by less than one standard deviation across "
                f"seeds; chosen by the tie-break ({TIE_BREAK})"
            )
        elif runner_up is not None:
            reason += (
                f"; runner-up {runner_up.model} ({runner_up.precision}) at {_fmt_spread(runner_up, scenario.metric)}"
            )
            if winner.value(scenario.metric) == runner_up.value(scenario.metric):
                reason += f" (equal: ordered by the tie-break, {TIE_BREAK})"
    elif nearest is not None:
        reason = (
            f"no candidate meets {constraints}; nearest miss {nearest.model} ({nearest.precision}) by "
            + ", ".join(_miss(k[4:], v) if k.startswith(("max_", "min_")) else f"{k} {v:g}" for k, v in miss_by.items())
        )
    else:
        lacking = [k[4:] for k in scenario.limits if measured and all(c.value(k[4:]) is None for c in measured)]
        if lacking:
            reason = f"none of the {_count(len(measured), 'candidate')} " + " or ".join(
                LACKING.get(metric, f"has {_words(metric)} measured") for metric in lacking
            )
        else:
            reason = f"no candidate has measured {_words(scenario.metric)}" + (
                f" and {constraints}" if constraints else ""
            )
    if useless:
        reason += (
            f" ({_count(len(useless), 'candidate')} left out: no better than always answering the most common label)"
        )
    next_step = None if winner is not None else _next_step(scenario, pool)
    return Decision(
        scenario, device, winner, runner_up, nearest, miss_by, len(ranked), len(pool), reason, tie, next_step
    )


UNITS = {
    "latency_p95_ms": ("p95 latency", "ms"),
    "latency_p50_ms": ("p50 latency", "ms"),
    "size_mb": ("weights", "MB"),
    "peak_memory_mb": ("peak memory", "MB"),
    "peak_memory_above_runtime_mb": ("peak memory above the runtime", "MB"),
    "throughput_per_s": ("throughput", "predictions/s"),
    "task_metric": ("task metric", ""),
    "task_metric_std": ("std of the task metric across seeds", ""),
    "task_metric_per_mb": ("task metric per MB", ""),
    "train_examples": ("training examples", ""),
    "domain_pretrained": ("domain pre-training", ""),
    "usd_per_million": ("cost", "USD per million predictions"),
    "languages": ("languages evaluated", ""),
}
"""Plain words and units for metric names in reasons."""

COUNTED = {"train_examples", "languages"}
"""Metrics that count things: a miss by them reads as a number of those things."""


LACKING = {
    "domain_pretrained": "was fine-tuned from a domain pre-training (pretrain) job's model",
    "train_examples": "records how many examples it was trained on",
    "languages": "was evaluated on more than one language (bertq records no language per data set yet)",
    "task_metric_std": "was trained with 2 or more seeds",
}
"""Why a candidate cannot be judged on a constraint whose number it lacks."""


def _words(metric: str) -> str:
    return UNITS.get(metric, (metric.replace("_", " "), ""))[0]


def _with_unit(metric: str, value: float | None) -> str:
    unit = UNITS.get(metric, ("", ""))[1]
    return f"{_fmt(value)} {unit}".rstrip()


def _miss(metric: str, gap: float) -> str:
    """How far a candidate misses a bound: "19.57 MB of weights", "3,001 training examples"."""
    if metric in COUNTED:
        return f"{gap:,.0f} {_words(metric)}"
    return f"{_with_unit(metric, gap)} of {_words(metric)}"


def _fmt_spread(candidate: Candidate, metric: str) -> str:
    text = _with_unit(metric, candidate.value(metric))
    std = candidate.value("task_metric_std") if metric == "task_metric" else None
    return f"{text} ± {std:.4f} over {candidate.seeds} seeds" if std is not None else text


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _next_step(scenario: Scenario, pool: list[Candidate]) -> str | None:
    for key, value in scenario.filters.items():
        step = FILTER_STEPS.get(key, {}).get(value)
        if step:
            return step
    for key in scenario.limits:
        step = NEXT_STEPS.get(key[4:])
        if step:
            return step
    return NEXT_STEPS.get(scenario.metric) if pool else None
