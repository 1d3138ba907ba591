"""Scenario selection on hand-made candidates, the scenarios file, and the report's formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertq.errors import SpecError
from bertq.report.render import as_html, as_json, as_markdown, pareto_front
from bertq.report.scenarios import Candidate, Scenario, decide, load_scenarios


def cand(
    job: int,
    task: float | None,
    p95: float | None,
    size: float,
    *,
    device: str = "cpu-A",
    precision: str = "fp32",
    throughput: float = 100.0,
    lineage: dict | None = None,
) -> Candidate:
    metrics = {"size_mb": size, "throughput_per_s": throughput}
    if task is not None:
        metrics["task_metric"] = metrics["accuracy"] = task
    if p95 is not None:
        metrics["latency_p95_ms"] = p95
    return Candidate(job, f"model-{job}", precision, "cpu", device, "sst2", metrics, lineage or {})


def test_winner_runner_up_and_a_tie_broken_by_latency_then_size():
    scenario = Scenario("max accuracy", "task_metric")
    [decision] = decide(
        scenario, [cand(1, 0.90, 30, 90), cand(2, 0.92, 50, 90), cand(3, 0.92, 20, 90), cand(4, 0.92, 20, 60)]
    )
    assert decision.winner.job_id == 4  # same accuracy and latency as 3, smaller
    assert decision.runner_up.job_id == 3
    assert decision.qualified == 4 and "0.92" in decision.reason


def test_constraints_and_the_nearest_miss_when_nothing_qualifies():
    scenario = Scenario("real-time", "task_metric", limits={"max_latency_p95_ms": 100.0})
    [decision] = decide(scenario, [cand(1, 0.95, 180, 90), cand(2, 0.91, 120, 60), cand(3, 0.80, 300, 20)])
    assert decision.winner is None and decision.runner_up is None
    assert decision.nearest_miss.job_id == 2 and decision.miss_by == {"max_latency_p95_ms": 20.0}
    assert "nearest miss model-2 (fp32) by 20 ms of p95 latency" in decision.reason
    few = Scenario("few labels", "task_metric", limits={"max_train_examples": 999})
    trained = cand(4, 0.9, 50, 50)
    trained.metrics["train_examples"] = 4000
    [counted] = decide(few, [trained])
    assert counted.reason.endswith("by 3,001 training examples")  # a count, not "3001 of training examples"
    [met] = decide(scenario, [cand(1, 0.95, 180, 90), cand(2, 0.91, 99, 60)])
    assert met.winner.job_id == 2 and met.nearest_miss.job_id == 1


def test_a_candidate_missing_a_needed_number_is_never_recommended():
    scenario = Scenario("real-time", "task_metric", limits={"max_latency_p95_ms": 100.0})
    [decision] = decide(scenario, [cand(1, 0.99, None, 10), cand(2, 0.90, 40, 90), cand(3, None, 10, 10)])
    assert decision.winner.job_id == 2 and decision.runner_up is None  # 1 has no latency, 3 no accuracy
    [nothing] = decide(Scenario("max", "task_metric"), [cand(5, None, 10, 10)])
    assert nothing.winner is None and nothing.nearest_miss is None and "no candidate has measured" in nothing.reason


def test_candidates_from_different_devices_are_decided_separately():
    scenario = Scenario("max accuracy", "task_metric")
    decisions = decide(
        scenario,
        [
            cand(1, 0.90, 30, 90, device="cpu-A"),
            cand(2, 0.95, 3, 90, device="H200"),
            cand(3, 0.91, 25, 90, device="cpu-A"),
        ],
    )
    by_device = {d.device: d for d in decisions}
    assert set(by_device) == {"cpu-A", "H200"}
    assert by_device["cpu-A"].winner.job_id == 3 and by_device["H200"].winner.job_id == 2
    assert by_device["cpu-A"].considered == 2  # the GPU's numbers were not in the CPU ranking
    filtered = decide(Scenario("gpu only", "task_metric", filters={"device": "cuda"}), [cand(1, 0.9, 30, 90)])
    assert filtered[0].winner is None and filtered[0].considered == 0


def test_minimise_objective_and_within_best():
    fastest = Scenario("smallest", "-size_mb")
    [decision] = decide(fastest, [cand(1, 0.9, 10, 90), cand(2, 0.8, 10, 30)])
    assert decision.winner.job_id == 2
    bulk = Scenario("bulk", "throughput_per_s", within_best=0.01)
    [decision] = decide(
        bulk,
        [
            cand(1, 0.900, 10, 90, throughput=300),
            cand(2, 0.895, 10, 60, throughput=700),
            cand(3, 0.850, 10, 30, throughput=2000),
        ],
    )
    assert decision.winner.job_id == 2 and decision.nearest_miss.job_id == 3


def test_scenarios_file_parses_and_bad_files_are_explained(tmp_path: Path):
    defaults = load_scenarios()
    assert [s.name for s in defaults][:3] == [
        "maximum accuracy",
        "real-time API (p95 <= 100 ms at batch 1)",
        "mobile / edge (weights <= 50 MB)",
    ]
    assert defaults[1].limits == {"max_latency_p95_ms": 100.0}
    own = tmp_path / "mine.toml"
    own.write_text('[[scenario]]\nname = "tiny"\nobjective = "-latency_p95_ms"\nmax_size_mb = 40\ndevice = "cpu"\n')
    [scenario] = load_scenarios(own)
    assert (
        scenario.maximise is False
        and scenario.filters == {"device": "cpu"}
        and scenario.limits == {"max_size_mb": 40.0}
    )
    own.write_text('[[scenario]]\nname = "x"\nobjective = "task_metric"\nmax_latency = "fast"\n')
    with pytest.raises(SpecError, match="unknown key 'max_latency'"):
        load_scenarios(own)


def test_formats_carry_the_same_decisions():
    candidates = [
        cand(1, 0.90, 30, 90, lineage={"job": 7}),
        cand(2, 0.88, 10, 60, lineage={"job": 9, "distilled_from_job": 7}),
    ]
    decisions = decide(Scenario("max accuracy", "task_metric"), candidates)
    payload = json.loads(as_json(decisions, candidates))
    [scenario] = payload["scenarios"]
    assert set(scenario) >= {"name", "constraints", "objective", "winner", "runner_up", "nearest_miss", "reason"}
    assert scenario["winner"]["job_id"] == 1 and scenario["winner"]["latency_p95_ms"] == 30
    assert len(payload["candidates"]) == 2
    assert "| max accuracy |" in as_markdown(decisions, candidates)
    page = as_html(decisions, candidates)
    assert page.count("<svg") == 2 and "marker-end" in page  # both plots, and the teacher -> student arrow
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched from a network
    assert pareto_front(candidates, "latency_p95_ms") == {1, 2}
    assert pareto_front([*candidates, cand(3, 0.85, 40, 95)], "latency_p95_ms") == {1, 2}


def test_candidates_of_different_tasks_or_data_are_never_ranked_together():
    from dataclasses import replace

    conll = replace(cand(1, 0.89, 30, 90), task="conll2003", data="/d/conll/valid.txt")
    sst2 = replace(cand(2, 0.86, 30, 90), data="/d/sst2/dev.tsv")
    other = replace(cand(3, 0.80, 30, 90), data="/d/sst2/other.tsv")
    [scenario] = [s for s in load_scenarios(None) if s.name == "maximum accuracy"]
    decisions = decide(scenario, [conll, sst2, other])
    by_group = {d.device: d.winner.job_id for d in decisions}
    assert by_group == {"cpu-A, conll2003 on valid.txt": 1, "cpu-A, sst2 on dev.tsv": 2, "cpu-A, sst2 on other.tsv": 3}
    assert all(d.considered == 1 for d in decisions)


def test_a_report_a_person_can_read_legends_plurals_and_load():
    """A new user's reading of the HTML report: plots without a legend, "1 candidates", and two
    evaluations of one model measured under very different machine load compared at face value."""
    from dataclasses import replace

    from bertq.report.render import warnings

    quiet = replace(cand(1, 0.90, 57, 90), conditions={"cpu_share": 0.97})
    busy = replace(cand(2, 0.88, 532, 90), conditions={"cpu_share": 0.41})
    [decision] = decide(Scenario("real-time", "task_metric", limits={"max_latency_p95_ms": 100.0}), [quiet, busy])
    assert "among 1 candidate of 2 meeting p95 latency <= 100 ms" in decision.reason
    page = as_html([decision], [quiet, busy])
    assert page.count("Pareto front (no model both better and cheaper)") == 2  # a legend on each plot
    assert page.count("teacher to distilled student") == 2
    [warning] = warnings([quiet, busy])
    assert "job 2 got 41% of its CPU threads" in warning and "job 1 97%" in warning and "not comparable" in warning
    assert "not comparable" in page
    assert warnings([quiet, replace(busy, conditions={"cpu_share": 0.9})]) == []  # close enough: no warning
