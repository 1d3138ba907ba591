"""The report's candidates: every successful evaluate job, with its numbers, lineage and cost.

A candidate is a model as deployed: one (model, precision, device, task, data). Its numbers are
its newest evaluation's (a model measured again is represented by its last numbers), flagged when
they are worse than an earlier evaluation of the same thing. Models fine-tuned (or distilled) with
the same settings but different seeds are one candidate: the mean of their numbers, with the
standard deviation of the task metric across seeds, so a one-point "win" can be told from noise.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bertq.db.jobs import latest_metrics, succeeded_jobs
from bertq.db.models import Artifact, Job
from bertq.families import PRESETS
from bertq.report.costs import Prices
from bertq.report.scenarios import Candidate

DEPLOYMENT_METRICS = ("params", "size_mb", "peak_memory_mb", "latency_p50_ms", "latency_p95_ms", "throughput_per_s")
REGRESSION_MARGIN = 0.001
"""A newer evaluation this much (or more) below an earlier one of the same model, data and precision
is flagged as a regression."""
SEED_FIELDS = ("seed", "teacher_outputs_job_id", "student_job_id", "teacher_eval_job_id", "student_eval_job_id")
"""Spec fields that may differ between seeds of one setting: the seed, and the ids of the pipeline
steps each run has of its own (everything else, the teacher included, must match)."""


def _model_name(session: Session, spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A readable model name and its lineage (fine-tuned from, distilled from which teacher)."""
    source_id = spec.get("model_job_id")
    if not source_id:
        return str(spec.get("model")), {}
    source = session.get(Job, source_id)
    if source is None:
        return f"job {source_id}", {}
    training = _training(source)
    if source.kind == "student":
        teacher = source.spec.get("teacher_job_id")
        layers = source.spec.get("student_layers")
        student = "cut " + ",".join(map(str, layers)) if layers else source.spec.get("student")
        losses = [
            f"{kind} loss {source.spec[key]:g}"
            for kind, key in (("hidden", "hidden_weight"), ("attention", "attention_weight"))
            if source.spec.get(key)
        ]
        name = f"student {source_id} ({student} of teacher {teacher}, alpha {source.spec.get('alpha')}"
        name += f", {', '.join(losses)})" if losses else ")"
        return name, {
            "kind": "student",
            "job": source_id,
            "distilled_from_job": teacher,
            "alpha": source.spec.get("alpha"),
            "transfer_data": source.spec.get("transfer_data"),
            **training,
        }
    name = f"{source.spec.get('model')} fine-tuned (job {source_id})"
    lineage = {"kind": source.kind, "job": source_id, "fine_tuned_from": source.spec.get("model"), **training}
    pretrained = _pretrain_job_of(session, source.spec.get("model_location"))
    if pretrained is not None:  # fine-tuned from a domain pre-training job's checkpoint
        lineage["pretrained_by_job"] = pretrained
        name = f"domain-pretrained (job {pretrained}) model fine-tuned (job {source_id})"
    return name, lineage


def _training(source: Job) -> dict[str, Any]:
    """The source job's training cost and setting: wall time, devices, examples, and its seed."""
    result = source.result or {}
    return {
        "train_s": result.get("train_runtime_s"),
        "gpus": source.spec.get("gpus", 1),
        "train_examples": result.get("train_examples"),
        "seed": source.spec.get("seed"),
        "setting": {k: v for k, v in sorted(source.spec.items()) if k not in SEED_FIELDS},
    }


def _pretrain_job_of(session: Session, location: str | None) -> int | None:
    if not location:
        return None
    artifact = session.scalars(
        select(Artifact)
        .join(Job)
        .where(Artifact.path == location, Artifact.kind == "checkpoint", Job.kind == "pretrain")
    ).first()
    return artifact.job_id if artifact is not None else None


def load_candidates(
    session: Session, *, task: str | None = None, data: str | None = None, prices: Prices | None = None
) -> list[Candidate]:
    """One candidate per evaluated (model, precision, device, task, data), seeds of one setting merged."""
    history: dict[tuple, list[Candidate]] = {}
    for job in succeeded_jobs(session=session, kind="evaluate"):
        spec, result = job.spec, job.result or {}
        if task and spec.get("task") != task:
            continue
        if data and spec.get("data") != data and not str(spec.get("data", "")).endswith(data):
            continue
        metrics = latest_metrics(job)
        preset = PRESETS.get(spec.get("task") or "")
        main = preset.family.main_metric if preset else ""
        if main in metrics:
            metrics["task_metric"] = metrics[main]
        name, lineage = _model_name(session, spec)
        _add_cost(metrics, lineage, result, prices)
        candidate = Candidate(
            job_id=job.id,
            model=name,
            precision=result.get("precision", spec.get("precision", "?")),
            device=result.get("device", spec.get("device", "?")),
            device_name=result.get("device_name", result.get("device", "?")),
            task=spec.get("task", "?"),
            metrics=metrics,
            lineage=lineage,
            data=str(spec.get("data") or ""),
            family=preset.family.name if preset else "",
            conditions={k: result[k] for k in ("machine_load", "cpu_share") if k in result},
        )
        model_key = spec.get("model_job_id") or result.get("model_location") or spec.get("model")
        key = (model_key, candidate.precision, candidate.device_name, candidate.task, spec.get("data"))
        history.setdefault(key, []).append(candidate)
    latest = [_flag_regression(evaluations) for evaluations in history.values()]
    return sorted(_merge_seeds(latest), key=lambda c: c.job_id)


def load_sweeps(session: Session, *, task: str | None = None) -> list[dict[str, Any]]:
    """Each finished sweep or comparison: its id, task, metric and per-setting values (for the plots)."""
    found = []
    for kind in ("sweep", "compare"):
        for job in succeeded_jobs(session=session, kind=kind):
            if task and job.spec.get("task") != task:
                continue
            found.append({"job_id": job.id, "kind": kind, "task": job.spec.get("task"), **(job.result or {})})
    return sorted(found, key=lambda s: s["job_id"])


def _add_cost(
    metrics: dict[str, float], lineage: dict[str, Any], result: dict[str, Any], prices: Prices | None
) -> None:
    """Training wall time and device-hours (the model's own training step), and the cost of a million
    predictions at the measured throughput and the device's price per hour."""
    if lineage.get("train_s") is not None:
        metrics["train_s"] = float(lineage["train_s"])
        metrics["train_device_hours"] = float(lineage["train_s"]) * float(lineage.get("gpus") or 1) / 3600
    if lineage.get("train_examples") is not None:
        metrics["train_examples"] = float(lineage["train_examples"])
    if lineage.get("pretrained_by_job") is not None:
        metrics["domain_pretrained"] = 1.0
    price = prices.per_hour(result.get("device_name", ""), result.get("device", "")) if prices else None
    throughput = metrics.get("throughput_per_s")
    if price is not None and throughput:
        metrics["usd_per_million"] = price / (throughput * 3600) * 1e6


def _flag_regression(evaluations: list[Candidate]) -> Candidate:
    """The newest evaluation, with `regression` set when an earlier one of it scored better."""
    newest = evaluations[-1]
    now = newest.value("task_metric")
    earlier = [c for c in evaluations[:-1] if c.value("task_metric") is not None]
    if now is None or not earlier:
        return newest
    best = max(earlier, key=lambda c: c.value("task_metric") or 0.0)
    then = best.value("task_metric") or 0.0
    if then - now >= REGRESSION_MARGIN:
        return replace(newest, regression={"earlier_job": best.job_id, "earlier": then, "latest": now})
    return newest


def _merge_seeds(candidates: list[Candidate]) -> list[Candidate]:
    """Candidates trained with one setting and different seeds, evaluated alike, become one."""
    groups: dict[tuple, list[Candidate]] = {}
    alone: list[Candidate] = []
    for candidate in candidates:
        setting = candidate.lineage.get("setting")
        if setting is None or candidate.lineage.get("seed") is None:
            alone.append(candidate)
            continue
        key = (repr(setting), candidate.precision, candidate.device_name, candidate.task, candidate.data)
        groups.setdefault(key, []).append(candidate)
    merged = list(alone)
    for members in groups.values():
        if len(members) == 1:
            merged.append(members[0])
            continue
        members.sort(key=lambda c: c.job_id)
        names = set().union(*(c.metrics for c in members))
        metrics = {
            name: statistics.fmean(c.metrics[name] for c in members if name in c.metrics)
            for name in names
            if all(name in c.metrics for c in members)
        }
        tasks = [c.metrics["task_metric"] for c in members if "task_metric" in c.metrics]
        if len(tasks) > 1:
            metrics["task_metric_std"] = statistics.stdev(tasks)
        last = members[-1]
        seeds = [c.lineage.get("seed") for c in members]
        base = re.sub(r" \(job \d+\)$", "", re.sub(r"^student \d+ ", "student ", last.model))  # one job's id
        merged.append(
            replace(
                last,
                model=f"{base} x{len(members)} seeds (jobs {', '.join(str(c.lineage.get('job')) for c in members)})",
                metrics=metrics,
                seeds=len(members),
                members=[c.job_id for c in members],
                lineage={**last.lineage, "seeds": seeds},
                regression=next((c.regression for c in members if c.regression), None),
            )
        )
    return merged
