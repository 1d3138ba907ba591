"""Sentence-pair classification: presets that name their second column, pairs encoded as one input,
trained, evaluated and served as an NLI model for zero-shot; refused where pairs do not apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertq.errors import SpecError

QNLI = Path(__file__).resolve().parents[2] / "shared" / "data" / "qnli-squad"


@pytest.fixture(scope="module")
def qnli_slice(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("qnli")
    for name, rows in (("train.tsv", 160), ("dev.tsv", 40)):
        lines = (QNLI / name).read_text(encoding="utf-8").splitlines()
        (folder / name).write_text("\n".join(lines[: rows + 1]) + "\n", encoding="utf-8")
    return folder / "train.tsv", folder / "dev.tsv"


def test_a_pair_task_trains_evaluates_and_serves_zero_shot(tiny_model, qnli_slice, tmp_path):
    from bertq.specs import build_evaluate_spec, build_finetune_spec
    from bertq.worker.context import LocalContext, call_local
    from bertq.worker.families import worker_family
    from bertq.worker.loading import load_tokenizer
    from bertq.worker.predict import load_predictor

    train, dev = qnli_slice
    spec = build_finetune_spec(model=str(tiny_model), task="qnli", train=str(train), eval=str(dev), epochs=1,
                               max_length=64, batch_size=16)  # fmt: skip
    assert (spec.text_column, spec.text_pair_column, spec.labels) == (
        "question",
        "sentence",
        ["entailment", "not_entailment"],
    )

    # Each example is one input: [CLS] question [SEP] sentence [SEP], the sentence in segment 1.
    family = worker_family("classification")
    examples = family.read_examples(spec.train, spec=spec, side="train")
    question, sentence = examples[0][0]
    assert question.startswith("When did the 1973 oil crisis begin") and sentence.startswith("The 1973 oil crisis")
    features = family.train_features(
        examples[:4], load_tokenizer(str(tiny_model), family="classification"), spec, spec.labels
    )
    sep = load_tokenizer(str(tiny_model), family="classification").sep_token_id
    assert all(row.count(sep) == 2 for row in features["input_ids"])  # two [SEP]s a row
    assert all(1 in types for types in features["token_type_ids"])

    trained = LocalContext(workdir=tmp_path / "finetune", job_id=1)
    call_local("finetune", spec.to_dict(), trained)
    [(_, checkpoint)] = [a for a in trained.reported_artifacts if a[0] == "checkpoint"]
    evaluate = build_evaluate_spec(model=str(checkpoint), task="qnli", data=str(dev), latency_samples=3, max_length=64)
    assert evaluate.text_pair_column == "sentence"
    measured = LocalContext(workdir=tmp_path / "evaluate", job_id=2)
    call_local("evaluate", evaluate.to_dict(), measured)
    assert measured.latest_metrics()["accuracy"] == pytest.approx(trained.latest_metrics()["eval_accuracy"])

    # A pair model with an "entailment" class is an NLI model: zero-shot ranks labels with it.
    predictor = load_predictor(str(checkpoint), "zero-shot", device="cpu", precision="fp32", labels=["good", "bad"])
    [ranked] = predictor.predict(["the movie was good"])
    assert sorted(ranked["labels"]) == ["bad", "good"] and len(ranked["scores"]) == 2


def test_pairs_are_refused_where_they_do_not_apply(tiny_model, qnli_slice, tmp_path):
    from bertq.distillation import build_distill_spec
    from bertq.specs import build_finetune_spec

    train, dev = qnli_slice
    with pytest.raises(SpecError, match="no column 'premise'"):
        build_finetune_spec(model=str(tiny_model), task="qnli", train=str(train), eval=str(dev), max_length=64,
                            text_pair_column="premise")  # fmt: skip
    conll = tmp_path / "ner.txt"
    conll.write_text("EU B-ORG\nrejects O\n\nPeter B-PER\n")
    with pytest.raises(SpecError, match="--text-pair-column: token classification"):
        build_finetune_spec(model=str(tiny_model), task="ner", train=str(conll), eval=str(conll), max_length=64,
                            text_pair_column="x")  # fmt: skip
    with pytest.raises(SpecError, match="qnli is a sentence-pair task, not supported by distill yet"):
        build_distill_spec(teacher=str(tiny_model), teacher_job=None, student="teacher", student_layers="1",
                           task="qnli", train=str(train), eval=str(dev), max_length=64)  # fmt: skip
