"""Continued masked-LM pre-training: perplexity on held-out text goes down, and the checkpoint is a
model that fine-tuning takes."""

from __future__ import annotations

import pytest

from bertq.errors import SpecError


@pytest.fixture(scope="module")
def corpus(tiny_data, tmp_path_factory):
    train, _ = tiny_data
    texts = [line.split("\t")[0] for line in train.read_text().splitlines()[1:]]
    path = tmp_path_factory.mktemp("corpus") / "reviews.txt"
    path.write_text("\n".join(texts) + "\n")
    return path


@pytest.mark.parametrize("whole_word", [False, True], ids=["tokens", "whole-words"])
def test_pretraining_lowers_heldout_perplexity_and_feeds_a_finetune(
    tiny_model, tiny_data, corpus, tmp_path, whole_word
):
    from bertq.pretraining import build_pretrain_spec
    from bertq.specs import build_finetune_spec
    from bertq.worker.context import LocalContext, call_local

    spec = build_pretrain_spec(model=str(tiny_model), corpus=[str(corpus)], epochs=3, batch_size=16, lr=2e-3,
                               max_length=32, heldout_fraction=0.1, whole_word=whole_word)  # fmt: skip
    assert spec.warmup_ratio == 0.1 and spec.weight_decay == 0.01  # a BERT: its recipe
    ctx = LocalContext(workdir=tmp_path / "pretrain", job_id=1)
    result = call_local("pretrain", spec.to_dict(), ctx)
    before, after = result["perplexity_before"], result["eval_perplexity"]
    assert after < 0.8 * before, (before, after)
    [(_, checkpoint)] = [a for a in ctx.reported_artifacts if a[0] == "checkpoint"]

    train, dev = tiny_data
    tuned = build_finetune_spec(model=str(checkpoint), task="sst2", train=str(train), eval=str(dev), epochs=1,
                                max_length=32, batch_size=16)  # fmt: skip
    finetuned = LocalContext(workdir=tmp_path / "finetune", job_id=2)
    call_local("finetune", tuned.to_dict(), finetuned)
    assert 0 <= finetuned.latest_metrics()["eval_accuracy"] <= 1


def test_bad_pretraining_input_is_refused(tiny_model, tmp_path):
    from bertq.pretraining import build_pretrain_spec

    few = tmp_path / "few.txt"
    few.write_text("one text\nanother\n")
    with pytest.raises(SpecError) as refused:
        build_pretrain_spec(model=str(tiny_model), corpus=[str(few)], max_length=32, mlm_probability=1.5,
                            knobs={"metric_for_best": "accuracy"})  # fmt: skip
    message = str(refused.value)
    assert "--corpus has 2 texts" in message and "--mlm-probability must be above 0 and below 1" in message
    assert "--metric-for-best: pre-training keeps the epoch with the lowest held-out perplexity" in message
    with pytest.raises(SpecError, match="missing.txt' matches no file"):
        build_pretrain_spec(model=str(tiny_model), corpus=[str(tmp_path / "missing.txt")], max_length=32)
