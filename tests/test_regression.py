"""Regression (STS-B-style similarity): a one-output head trained with MSE, scored by Pearson and
Spearman, evaluated and served in bulk (`--task score`) on sentence pairs; and bulk inputs with a
second column: pairs for classify/score, each record's own question for qa."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bertq.errors import SpecError

QNLI = Path(__file__).resolve().parents[2] / "shared" / "data" / "qnli-squad"


@pytest.fixture(scope="module")
def similarity(tmp_path_factory) -> tuple[Path, Path]:
    """Real question/sentence pairs, scored 0-5 by how many of the question's words the sentence has:
    a similarity a model can learn from the tokens."""
    folder = tmp_path_factory.mktemp("similarity")
    lines = (QNLI / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    rows = []
    for line in lines[:200]:
        _, question, sentence, _ = line.split("\t")
        words = set(question.lower().split())
        rows.append(f"{question}\t{sentence}\t{5 * len(words & set(sentence.lower().split())) / len(words):.2f}")
    for name, part in (("train.tsv", rows[:160]), ("dev.tsv", rows[160:])):
        (folder / name).write_text("sentence1\tsentence2\tlabel\n" + "\n".join(part) + "\n", encoding="utf-8")
    return folder / "train.tsv", folder / "dev.tsv"


def test_correlations_match_their_definitions():
    from bertq.worker.classification import correlations

    measured = correlations(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0]))
    assert measured["pearson"] == pytest.approx(0.8)
    assert measured["spearman"] == pytest.approx(0.8)
    assert measured["mse"] == pytest.approx(0.5)
    # Spearman is Pearson of ranks, ties averaged: a monotone but curved relation scores 1.
    curved = correlations(np.array([1.0, 2.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 2.0, 3.0, 1000.0]))
    assert curved["spearman"] == pytest.approx(1.0) and curved["pearson"] < 0.8
    assert correlations(np.zeros(5), np.arange(5.0))["pearson"] == 0.0  # constant: no correlation, not NaN


def test_a_regression_pair_task_trains_evaluates_and_scores_in_bulk(tiny_model, similarity, tmp_path):
    from bertq.bulk import build_infer_spec
    from bertq.families import head_family
    from bertq.models import resolve_model
    from bertq.specs import build_evaluate_spec, build_finetune_spec
    from bertq.worker.context import LocalContext, call_local
    from bertq.worker.predict import load_predictor

    train, dev = similarity
    spec = build_finetune_spec(model=str(tiny_model), task="stsb", train=str(train), eval=str(dev), epochs=2,
                               max_length=64, batch_size=16, lr=1e-3)  # fmt: skip
    assert (spec.family, spec.text_pair_column, spec.labels) == ("regression", "sentence2", None)
    trained = LocalContext(workdir=tmp_path / "finetune", job_id=1)
    call_local("finetune", spec.to_dict(), trained)
    metrics = trained.latest_metrics()
    assert {"eval_pearson", "eval_spearman", "eval_mse"} <= set(metrics)
    assert -1 <= metrics["eval_pearson"] <= 1 and metrics["eval_mse"] > 0
    [(_, checkpoint)] = [a for a in trained.reported_artifacts if a[0] == "checkpoint"]
    config = json.loads((Path(checkpoint) / "config.json").read_text())
    assert (config["problem_type"], len(config["id2label"])) == ("regression", 1)
    assert head_family(resolve_model(str(checkpoint))).name == "regression"  # not mistaken for classes

    evaluate = build_evaluate_spec(model=str(checkpoint), task="stsb", data=str(dev), latency_samples=3, max_length=64)
    measured = LocalContext(workdir=tmp_path / "evaluate", job_id=2)
    call_local("evaluate", evaluate.to_dict(), measured)
    assert measured.latest_metrics()["pearson"] == pytest.approx(metrics["eval_pearson"], abs=1e-4)

    # Served in bulk: one number per pair; classify refuses a regression head.
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("id\ta\tb\n1\tthe movie was good\tthe film was good\n2\tthe movie was good\tparis is big\n")
    out = tmp_path / "out"
    infer = build_infer_spec(model=str(checkpoint), model_job=None, task="score", inputs=[str(pairs)],
                             output=str(out), text_column="a", text_pair_column="b", id_column="id")  # fmt: skip
    assert infer.pair_column == "b"
    with pytest.raises(SpecError, match="no trained classification head"):
        build_infer_spec(model=str(checkpoint), model_job=None, task="classify", inputs=[str(pairs)],
                         output=str(out), text_column="a")  # fmt: skip
    predictor = load_predictor(str(checkpoint), "score", device="cpu", precision="fp32", max_length=64)
    scores = predictor.predict([("the movie was good", "the film was good"), ("the movie was good", "paris is big")])
    assert all(isinstance(r["score"], float) for r in scores) and scores[0] != scores[1]


def test_regression_labels_must_be_numbers(tiny_model, similarity, tmp_path):
    from bertq.specs import build_finetune_spec

    train, dev = similarity
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence1\tsentence2\tlabel\na\tb\t4.5\nc\td\thigh\n")
    with pytest.raises(SpecError, match=r"example 2 has 'label' = 'high', not a number"):
        build_finetune_spec(model=str(tiny_model), task="stsb", train=str(bad), eval=str(dev), max_length=64)


def test_bulk_reads_a_second_column_per_record(tmp_path):
    from bertq import sharding
    from bertq.bulk import build_infer_spec

    records = tmp_path / "questions.jsonl"
    records.write_text(
        json.dumps({"id": "a", "context": "Paris is the capital of France.", "q": "What is the capital?"})
        + "\n"
        + json.dumps({"id": "b", "context": "The Nile is long.", "q": "Which river is long?"})
        + "\n"
    )
    [shard] = sharding.plan_shards([records], shards=1, text_column="context", id_column="id", pair_column="q")
    read = list(sharding.read_shard(shard, text_column="context", id_column="id", pair_column="q"))
    assert read == [
        ("a", ("Paris is the capital of France.", "What is the capital?")),
        ("b", ("The Nile is long.", "Which river is long?")),
    ]
    with pytest.raises(sharding.InputError, match="no column 'question'"):
        sharding.plan_shards([records], shards=1, text_column="context", id_column="id", pair_column="question")
    plain = tmp_path / "plain.txt"
    plain.write_text("one text\n")
    with pytest.raises(sharding.InputError, match="plain text has one text a line"):
        sharding.sample_inputs([str(plain)], text_column=None, id_column=None, pair_column="q")

    def infer(**options):  # type: ignore[no-untyped-def]
        return build_infer_spec(model="minilm", model_job=None, inputs=[str(records)], output=str(tmp_path / "o"),
                                text_column="context", id_column="id", **options)  # fmt: skip

    with pytest.raises(SpecError, match="not both"):
        infer(task="qa", question="why?", question_column="q")
    with pytest.raises(SpecError, match="--question-column is for --task qa"):
        infer(task="embed", question_column="q")
    with pytest.raises(SpecError, match="embed reads one text a record; pairs are for classify, score"):
        infer(task="embed", text_pair_column="q")


def test_bulk_qa_asks_each_record_its_own_question(tiny_model, tmp_path):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from bertq.worker.predict import load_predictor

    folder = tmp_path / "qa"
    AutoModelForQuestionAnswering.from_pretrained(tiny_model).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    predictor = load_predictor(str(folder), "qa", device="cpu", precision="fp32", max_length=64)
    contexts = ["the movie was good and the actors were great", "the film was bad"]
    answers = predictor.predict([(contexts[0], "what was good?"), (contexts[1], "what was bad?")])
    for context, answer in zip(contexts, answers):
        assert context[answer["start"] : answer["end"]] == answer["answer"]  # offsets into its own context
        assert 0 <= answer["score"] <= 1
