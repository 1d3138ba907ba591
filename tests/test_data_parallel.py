"""One fine-tune over two processes (torch.distributed, gloo on this CPU-only machine), through a
real worker: the same model quality as one process, and a rank killed mid-run resumes cleanly."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_two_data_parallel_processes_train_like_one_and_survive_a_killed_rank(bertq, tiny_model, tiny_data):
    train, dev = tiny_data
    # Rank 1 of the 2-process job's first attempt dies by SIGKILL at step 13 (epoch 2; 10 steps an epoch).
    bertq.env["BERTQ_FAULT_KILL_RANK"] = "1:13"
    bertq.start_worker()

    def finetune(gpus: int) -> dict:
        submitted = bertq.run(
            "submit", "finetune", "--model", str(tiny_model), "--task", "sst2", "--train", str(train),
            "--eval", str(dev), "--max-length", "32", "--epochs", "4", "--batch-size", "16", "--lr", "5e-3",
            "--gpus", str(gpus), "--no-evaluate", "--queue", "cpu", "--json", check=True,
        )  # fmt: skip
        job = json.loads(submitted.stdout)["id"]
        waited = bertq.run("wait", str(job), "--timeout", "400")
        view = bertq.json("show", str(job))
        assert waited.returncode == 0, (view["error"], bertq.run("logs", str(job)).stdout[-3000:])
        return view

    two = finetune(2)
    one = finetune(1)
    first, second = two["attempt_history"]
    assert "training process 1 of 2 died" in (first["error"] or ""), first
    assert second["outcome"] == "SUCCEEDED" and second["resumed_from"].endswith("checkpoint-10"), second
    assert two["result"]["data_parallel_processes"] == 2 and two["result"]["train_batch_size"] == 8
    assert one["result"]["train_batch_size"] == 16 and "data_parallel_processes" not in one["result"]
    # Same examples per optimiser step, so the same number of steps, and a model as good as one process's
    # (the examples are shared out in another order, so not bit for bit the same).
    assert two["progress_detail"]["total"] == one["progress_detail"]["total"] == 40
    assert two["metrics"]["eval_accuracy"] == pytest.approx(one["metrics"]["eval_accuracy"], abs=0.1)
    # The loss is the whole batch's mean on both (transformers' default scaled it by the process count).
    assert two["metrics"]["train_loss"] == pytest.approx(one["metrics"]["train_loss"], rel=0.15)
    # Bad input at submit: a batch that does not split over the processes.
    refused = bertq.run("submit", "finetune", "--model", str(tiny_model), "--train", str(train), "--eval", str(dev),
                        "--batch-size", "15", "--gpus", "2")  # fmt: skip
    assert refused.returncode == 2 and "--batch-size 15 does not split evenly over --gpus 2" in refused.stderr
