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

FILTERS = ("device", "task", "precision")


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
            "lineage": self.lineage,
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
    """Objective first; ties broken by lower p95 latency, then smaller size, then the older job."""
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
    measured = [c for c in pool if c.value(scenario.metric) is not None]
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
        f"{k.replace('max_', '').replace('min_', '')} {'<=' if k.startswith('max_') else '>='} {_fmt(v)}"
        for k, v in scenario.limits.items()
    )
    if scenario.within_best is not None:
        constraints = ", ".join(
            filter(None, [constraints, f"task metric within {scenario.within_best:g} of the best ({_fmt(best_task)})"])
        )
    if winner is not None:
        reason = (
            f"{verb} {scenario.metric} ({_fmt(winner.value(scenario.metric))}) among {len(ranked)} of {len(pool)} "
            f"candidates{' meeting ' + constraints if constraints else ''}"
        )
        if runner_up is not None:
            reason += (
                f"; runner-up {runner_up.model} ({runner_up.precision}) at {_fmt(runner_up.value(scenario.metric))}"
            )
    elif nearest is not None:
        reason = (
            f"no candidate meets {constraints}; nearest miss {nearest.model} ({nearest.precision}) by "
            + ", ".join(f"{k} {v:g}" for k, v in miss_by.items())
        )
    else:
        reason = f"no candidate has measured {scenario.metric}" + (f" and {constraints}" if constraints else "")
    return Decision(scenario, device, winner, runner_up, nearest, miss_by, len(ranked), len(pool), reason)
