"""The report's candidates from the database: seeds of one setting merged into mean ± std, a win
within one std reported as a tie, a worse re-evaluation flagged with both numbers, training cost and
serving cost from an editable price table, and what to try when no candidate meets a scenario."""

from __future__ import annotations

from typing import Any

import pytest

from bertq.db import jobs as q
from bertq.db.models import JobStatus
from bertq.errors import SpecError


def _job(bertq, kind: str, spec: dict[str, Any], metrics: dict[str, float], result: dict[str, Any]) -> int:  # type: ignore[no-untyped-def]
    with bertq.sessions()() as s, s.begin():
        job_id = q.create_job(session=s, kind=kind, spec=spec, queue="cpu", priority=5, max_attempts=1).id
    with bertq.sessions()() as s, s.begin():
        q.claim(session=s, job_id=job_id, worker="w", lease_seconds=60)
        q.add_metrics(session=s, job_id=job_id, attempt=1, values=metrics, split="test")
        q.finish(session=s, job_id=job_id, attempt=1, status=JobStatus.SUCCEEDED, result=result)
    return job_id


def _trained_and_evaluated(
    bertq, model: str, seed: int, accuracy: float, *, lr: float = 3e-5, baseline: float = 0.5
) -> int:  # type: ignore[no-untyped-def]
    spec = {"model": model, "task": "sst2", "train": "/d/train.tsv", "lr": lr, "epochs": 2, "seed": seed, "gpus": 1}
    trained = _job(
        bertq, "finetune", spec, {"eval_accuracy": accuracy}, {"train_runtime_s": 360.0, "train_examples": 800}
    )
    evaluate = {"model": str(trained), "model_job_id": trained, "task": "sst2", "data": "/d/dev.tsv"}
    measured = {"accuracy": accuracy, "size_mb": 90.0, "latency_p95_ms": 20.0 if model == "a" else 15.0,
                "throughput_per_s": 500.0, "peak_memory_above_runtime_mb": 200.0,
                "majority_baseline": baseline}  # fmt: skip
    result = {"device": "cpu", "device_name": "AMD EPYC (2 cores)", "precision": "fp32", "machine_load": 0.5}
    return _job(bertq, "evaluate", evaluate, measured, result)


def test_seeds_merge_ties_regressions_and_costs(bertq):
    from bertq.report.candidates import load_candidates
    from bertq.report.costs import load_prices
    from bertq.report.render import as_table, warnings
    from bertq.report.scenarios import Scenario, decide, load_scenarios

    for seed, accuracy in ((1, 0.90), (2, 0.92), (3, 0.88)):
        _trained_and_evaluated(bertq, "a", seed, accuracy)
    for seed, accuracy in ((1, 0.91), (2, 0.905)):
        _trained_and_evaluated(bertq, "b", seed, accuracy)
    _trained_and_evaluated(bertq, "a", 1, 0.70, lr=1e-2)  # another setting: a candidate of its own

    with bertq.sessions()() as session:
        candidates = load_candidates(session, prices=load_prices())
    by_seeds = sorted(candidates, key=lambda c: -c.seeds)
    a, b, other = by_seeds
    assert (a.seeds, b.seeds, other.seeds) == (3, 2, 1)
    assert a.metrics["task_metric"] == pytest.approx(0.90) and a.metrics["task_metric_std"] == pytest.approx(0.02)
    assert b.metrics["task_metric"] == pytest.approx(0.9075) and "task_metric_std" not in other.metrics
    # Cost: the training step's wall time and device-hours, and serving cost at the example CPU price.
    assert a.metrics["train_s"] == 360.0 and a.metrics["train_device_hours"] == pytest.approx(0.1)
    assert a.metrics["usd_per_million"] == pytest.approx(0.10 / (500 * 3600) * 1e6)

    # b leads a by 0.0075, inside a's spread of 0.02: a tie, chosen by the named tie-break.
    [decision] = decide(Scenario("maximum accuracy", "task_metric"), candidates)
    assert decision.tie and decision.winner is b
    assert (
        "a tie" in decision.reason
        and "lower p95 latency" in decision.reason
        and "± 0.0200 over 3 seeds" in decision.reason
    )
    [stable] = decide(Scenario("stable", "task_metric", limits={"max_task_metric_std": 0.01}), candidates)
    assert stable.winner is b  # std 0.0035; a's 0.02 is too wide and a single seed has no std

    # Every default scenario gives a winner or a reason, and a next step where none qualifies.
    decisions = [d for s in load_scenarios() for d in decide(s, candidates)]
    for d in decisions:
        assert d.winner is not None or (d.reason and d.next_step), d.scenario.name
    domain = next(d for d in decisions if d.scenario.name.startswith("domain-specific"))
    assert "was fine-tuned from a domain pre-training" in domain.reason and "bertq submit pretrain" in domain.next_step
    few = next(d for d in decisions if d.scenario.name.startswith("few labelled"))
    assert few.winner is b  # 800 training examples each

    # Evaluated again, worse: flagged with both numbers.
    with bertq.sessions()() as session:
        trained = max(j.id for j in q.succeeded_jobs(session=session, kind="finetune"))
    evaluate = {"model": str(trained), "model_job_id": trained, "task": "sst2", "data": "/d/dev.tsv"}
    result = {"device": "cpu", "device_name": "AMD EPYC (2 cores)", "precision": "fp32"}
    _job(bertq, "evaluate", evaluate, {"accuracy": 0.60, "size_mb": 90.0}, result)
    with bertq.sessions()() as session:
        again = load_candidates(session)
    flagged = [c for c in again if c.regression]
    assert len(flagged) == 1 and flagged[0].regression["earlier"] == pytest.approx(0.70)
    text = as_table([], again)
    assert any("0.7000" in w and "0.6000" in w for w in warnings(again)) and "regression" in text


def test_a_model_at_majority_level_wins_no_scenario(bertq):
    """Three seeds that all answer the most common label have no spread at all: without this rule the
    steadiest-across-seeds scenario chose that model (bench/compare_bench.sh, a 3-layer cut MiniLM)."""
    from bertq.report.candidates import load_candidates
    from bertq.report.scenarios import Scenario, decide

    for seed in (1, 2, 3):
        _trained_and_evaluated(bertq, "a", seed, 0.5092, baseline=0.5092)
    for seed, accuracy in ((1, 0.91), (2, 0.905)):
        _trained_and_evaluated(bertq, "b", seed, accuracy)
    with bertq.sessions()() as session:
        candidates = load_candidates(session)
    [stable] = decide(Scenario("stable", "task_metric", limits={"max_task_metric_std": 0.01}), candidates)
    assert stable.winner is not None and stable.winner.model.startswith("b ")
    assert "1 candidate left out: no better than always answering the most common label" in stable.reason
    [fastest] = decide(Scenario("fastest", "-latency_p95_ms"), candidates)
    assert fastest.winner is not None and fastest.winner.model.startswith("b ")  # a is faster, and useless


def test_price_tables_are_checked(tmp_path):
    from bertq.report.costs import load_prices

    prices = load_prices()
    assert prices.per_hour("NVIDIA H200", "cuda") == 3.50 and prices.per_hour("AMD EPYC (2 cores)", "cpu") == 0.10
    assert prices.per_hour("NVIDIA A100-SXM4-80GB", "cuda") == 1.50  # the longest key found in the name
    bad = tmp_path / "prices.toml"
    bad.write_text('[prices]\ncpu = "cheap"\n')
    with pytest.raises(SpecError, match="cpu are not"):
        load_prices(bad)
    bad.write_text("cpu = 1\n")
    with pytest.raises(SpecError, match=r"needs a \[prices\] table"):
        load_prices(bad)


def test_the_html_report_draws_each_sweep_and_the_learning_curve():
    from bertq.report.render import as_html
    from bertq.sweeps import summarise

    trials = [{"model": "m", "setting": {"lr": lr, "train_limit": n}, "seed": s, "finetune": j, "evaluate": []}
              for j, (lr, n, s) in enumerate([(1e-5, 100, 1), (1e-5, 100, 2), (1e-5, 800, 1), (1e-5, 800, 2)])]  # fmt: skip
    sweep = {"job_id": 9, "kind": "sweep", "task": "sst2", "metric": "accuracy",
             **summarise(trials, {0: 0.7, 1: 0.72, 2: 0.85, 3: 0.86})}  # fmt: skip
    page = as_html([], [], [sweep])
    assert "learning curve" in page and "accuracy against lr" in page
    assert page.count("<title>m: ") == 8  # every seed of every setting, in both plots
    assert "mean across seeds" in page and "best m" in page and "0.8550 ± 0.0071" in page
    assert "(lr=1e-05, train_limit=800)" in page  # the best setting as its values, not a dict

    # A comparison of models alone has nothing to plot against: each model's mean ± std in a table.
    models = [{"model": m, "setting": {}, "seed": s, "finetune": j, "evaluate": []}
              for j, (m, s) in enumerate([("a", 1), ("a", 2), ("b", 1), ("b", 2)])]  # fmt: skip
    compare = {"job_id": 10, "kind": "compare", "task": "sst2", "metric": "accuracy",
               **summarise(models, {0: 0.80, 1: 0.82, 2: 0.76, 3: 0.77})}  # fmt: skip
    page = as_html([], [], [compare])
    assert "{}" not in page and "best a at accuracy 0.8100 ± 0.0141" in page
    assert "<td>b</td><td>0.7650 ± 0.0071</td><td>2</td>" in page
