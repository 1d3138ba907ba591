"""Sweeps and comparisons: a grid (or random draws) of settings x seeds expanded into fine-tune
trials under one row that summarises mean ± std per setting; resumable when a worker dies, never
re-running a finished trial; refused at submit when a setting cannot be swept."""

from __future__ import annotations

import json
import os
import signal

import pytest

from bertq.errors import SpecError
from tests.helpers import beat as _beat
from tests.helpers import stop as _stop
from tests.helpers import wait_for as _wait_for


def test_grids_random_draws_and_their_refusals():
    from bertq.sweeps import parse_grid, summarise

    grid = parse_grid(["lr=1e-5,3e-5", "epochs=2,3"], random_count=None, seed=1)
    assert grid == [{"lr": 1e-5, "epochs": 2.0}, {"lr": 1e-5, "epochs": 3.0}, {"lr": 3e-5, "epochs": 2.0},
                    {"lr": 3e-5, "epochs": 3.0}]  # fmt: skip
    drawn = parse_grid(["lr=1e-5:1e-3", "batch_size=8,16"], random_count=6, seed=1)
    assert len(drawn) == 6 and all(1e-5 <= d["lr"] <= 1e-3 and d["batch_size"] in (8, 16) for d in drawn)
    assert drawn == parse_grid(["lr=1e-5:1e-3", "batch_size=8,16"], random_count=6, seed=1)  # seeded
    assert parse_grid(["train_limit=100,1000"], random_count=None, seed=1) == [
        {"train_limit": 100},
        {"train_limit": 1000},
    ]
    with pytest.raises(SpecError, match="cannot sweep 'dropout'"):
        parse_grid(["dropout=0.1,0.2"], random_count=None, seed=1)
    with pytest.raises(SpecError, match="add --random N"):
        parse_grid(["lr=1e-5:1e-3"], random_count=None, seed=1)
    with pytest.raises(SpecError, match="0 < low < high"):
        parse_grid(["lr=1e-3:1e-5"], random_count=3, seed=1)

    trials = [{"model": "m", "setting": {"lr": lr}, "seed": s, "finetune": 10 * i + s, "evaluate": []}
              for i, lr in enumerate((1e-5, 3e-5)) for s in (1, 2)]  # fmt: skip
    summary = summarise(trials, {1: 0.80, 2: 0.84, 11: 0.90, 12: 0.86})
    assert summary["best"]["setting"] == {"lr": 3e-5} and summary["best"]["mean"] == pytest.approx(0.88)
    assert summary["best"]["std"] == pytest.approx(0.028284, abs=1e-5) and summary["best"]["seeds"] == 2


def _sweep(bertq, tiny_model, tiny_data, *extra: str) -> int:  # type: ignore[no-untyped-def]
    train, dev = tiny_data
    return json.loads(
        bertq.run(
            "submit",
            "sweep",
            "--model",
            str(tiny_model),
            "--task",
            "sst2",
            "--train",
            str(train),
            "--eval",
            str(dev),
            "--max-length",
            "32",
            "--batch-size",
            "8",
            "--json",
            *extra,
            check=True,
        ).stdout  # fmt: skip
    )["id"]


def test_a_sweep_survives_a_killed_worker_and_runs_each_trial_once(bertq, tiny_model, tiny_data):
    """2 x 2 grid, 2 seeds: 8 trials. One worker is SIGKILLed while it trains a trial; the trial
    resumes on the other worker from its checkpoint, and every trial ends SUCCEEDED exactly once."""
    bertq.env.update(BERTQ_FAULT_STEP_SECONDS="0.03")  # trials of a second or more: the kill lands mid-trial
    workers = {"one": bertq.start_worker(name="one@%h"), "two": bertq.start_worker(name="two@%h")}
    beat = _beat(bertq)
    try:
        sweep = _sweep(bertq, tiny_model, tiny_data, "--grid", "lr=1e-3,3e-3", "--grid", "epochs=2,3",
                       "--seeds", "2", "--no-evaluate", "--max-parallel", "2")  # fmt: skip
        view = bertq.json("show", str(sweep))
        trials = [c["id"] for c in view["children"]]
        assert len(trials) == 8 and {c["kind"] for c in view["children"]} == {"finetune"}
        running = _wait_for(
            lambda: next((t for t in trials if bertq.json("show", str(t)).get("lease_owner")), None), timeout=120
        )
        owner = bertq.json("show", str(running))["lease_owner"].split("@", 1)[0]
        os.killpg(workers[owner].pid, signal.SIGKILL)
        assert bertq.run("wait", str(sweep), "--timeout", "600").returncode == 0
    finally:
        _stop(beat)
    view = bertq.json("show", str(sweep))
    assert view["status"] == "SUCCEEDED"
    outcomes = {t: [a["outcome"] for a in bertq.json("show", str(t))["attempt_history"]] for t in trials}
    assert all(history.count("SUCCEEDED") == 1 for history in outcomes.values()), outcomes
    assert outcomes[running][-2:] == ["LOST", "SUCCEEDED"]  # the killed trial, resumed elsewhere
    assert sum(len(h) for h in outcomes.values()) == 9  # nothing else ran twice
    summary = view["result"]
    assert len(summary["settings"]) == 4 and all(row["seeds"] == 2 for row in summary["settings"])
    assert summary["best"]["mean"] == max(row["mean"] for row in summary["settings"])
    assert "best_accuracy" in view["metrics"]


def test_sweep_and_compare_refuse_what_cannot_run(bertq, tiny_model, tiny_data):
    train, dev = tiny_data
    base = ["--task", "sst2", "--train", str(train), "--eval", str(dev), "--max-length", "32"]
    refused = bertq.run("submit", "sweep", "--model", str(tiny_model), *base, "--grid", "lr=-1,1e-5")
    assert refused.returncode == 2 and "--lr must be more than 0" in refused.stderr
    refused = bertq.run("submit", "compare", "--models", str(tiny_model), *base)
    assert refused.returncode == 2 and "two or more models" in refused.stderr
    refused = bertq.run("submit", "compare", "--models", f"{tiny_model},{tiny_model}", *base, "--precisions", "fp8")
    assert refused.returncode == 2 and "--precisions 'fp8'" in refused.stderr
    assert bertq.json("jobs") == [] or not bertq.json("jobs")  # nothing was enqueued
