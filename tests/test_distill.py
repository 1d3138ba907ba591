"""Distillation: the loss, layer cutting, the pipeline through real workers, caching, failures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch


def test_kd_loss_matches_a_hand_computed_value():
    from bertq.worker.kd import distillation_loss

    student = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[0.0, 2.0]])
    t, alpha = 2.0, 0.25
    p = [math.exp(0) / (math.exp(0) + math.exp(1)), math.exp(1) / (math.exp(0) + math.exp(1))]  # teacher / T
    q = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]  # student / T
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    ce = -math.log(math.exp(1) / (math.exp(1) + 1))  # gold label 0
    expected = alpha * t * t * kl + (1 - alpha) * ce
    value = distillation_loss(student, teacher, torch.tensor([0]), temperature=t, alpha=alpha)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    # An unlabelled (transfer) example contributes the soft term alone.
    soft_only = distillation_loss(student, teacher, torch.tensor([-100]), temperature=t, alpha=alpha)
    assert soft_only.item() == pytest.approx(alpha * t * t * kl, rel=1e-6)


def test_cutting_layers_keeps_the_teachers_weights():
    from transformers import BertConfig, BertForSequenceClassification

    from bertq.worker.students import cut_from_teacher

    torch.manual_seed(0)
    teacher = BertForSequenceClassification(
        BertConfig(
            vocab_size=50,
            hidden_size=16,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=3,
        )
    )
    student = cut_from_teacher(teacher, [0, 3])
    assert student.config.num_hidden_layers == 2 and student.config.num_labels == 3
    t, s = teacher.state_dict(), student.state_dict()
    assert torch.equal(s["bert.embeddings.word_embeddings.weight"], t["bert.embeddings.word_embeddings.weight"])
    assert torch.equal(
        s["bert.encoder.layer.0.attention.self.query.weight"], t["bert.encoder.layer.0.attention.self.query.weight"]
    )
    assert torch.equal(s["bert.encoder.layer.1.output.dense.weight"], t["bert.encoder.layer.3.output.dense.weight"])
    assert torch.equal(s["classifier.weight"], t["classifier.weight"])
    assert not any(".layer.2." in key or ".layer.3." in key for key in s)
    with pytest.raises(Exception, match="within|indices"):
        cut_from_teacher(teacher, [0, 4])


def _submit(bertq, *args: str) -> int:
    return json.loads(bertq.run("submit", *args, "--json", check=True).stdout)["id"]


def _steps(view: dict) -> dict[str, list[int]]:
    kinds: dict[str, list[int]] = {}
    for child in view["children"]:
        kinds.setdefault(child["kind"], []).append(child["id"])
    return kinds


@pytest.mark.slow
def test_distill_pipeline_trains_the_teacher_caches_outputs_and_summarises(bertq, tiny_model, tiny_data):
    train, dev = tiny_data
    bertq.start_worker()
    common = [
        "--task",
        "sst2",
        "--train",
        str(train),
        "--eval",
        str(dev),
        "--max-length",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
    ]
    parent = _submit(
        bertq, "distill", "--teacher", str(tiny_model), "--student", "teacher", "--student-layers", "1", *common
    )
    assert bertq.run("wait", str(parent), "--timeout", "400").returncode == 0
    view = bertq.json("show", str(parent))
    steps = _steps(view)
    assert sorted(steps) == ["evaluate", "finetune", "student", "teacher_outputs"] and len(steps["evaluate"]) == 2
    assert all(c["status"] == "SUCCEEDED" for c in view["children"])
    summary = view["summary"]
    assert summary["teacher_job"] == steps["finetune"][0] and summary["student_job"] == steps["student"][0]
    student_eval = bertq.json("show", str(summary["student_eval_job"]))
    teacher_eval = bertq.json("show", str(summary["teacher_eval_job"]))
    assert summary["retention"] == pytest.approx(
        student_eval["metrics"]["accuracy"] / teacher_eval["metrics"]["accuracy"]
    )
    assert summary["speedup"] == pytest.approx(
        student_eval["metrics"]["throughput_per_s"] / teacher_eval["metrics"]["throughput_per_s"]
    )
    assert summary["size_ratio"] < 1  # one layer of two: a smaller model

    from transformers import AutoConfig

    student_view = bertq.json("show", str(summary["student_job"]))
    assert AutoConfig.from_pretrained(student_view["artifacts"][0]["path"]).num_hidden_layers == 1

    # Distilling again from the same (now finished) teacher and data reuses the cached outputs.
    first_outputs = bertq.json("show", str(steps["teacher_outputs"][0]))
    again = _submit(
        bertq,
        "distill",
        "--teacher",
        str(summary["teacher_job"]),
        "--student",
        "teacher",
        "--student-layers",
        "1",
        "--epochs",
        "1",
        "--max-length",
        "32",
    )
    assert bertq.run("wait", str(again), "--timeout", "400").returncode == 0
    again_steps = _steps(bertq.json("show", str(again)))
    assert "finetune" not in again_steps  # the teacher job was used as it is
    second_outputs = bertq.json("show", str(again_steps["teacher_outputs"][0]))
    assert first_outputs["metrics"]["cache_hit"] == 0 and second_outputs["metrics"]["cache_hit"] == 1
    assert second_outputs["artifacts"][0]["path"] == first_outputs["artifacts"][0]["path"]


@pytest.fixture(scope="module")
def other_vocab_model(tmp_path_factory) -> Path:
    """A tiny BERT whose vocabulary lists the same words in another order: other token ids."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from bertq.demo import demo_vocabulary

    folder = tmp_path_factory.mktemp("other-vocab")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "extra", "words", *reversed(demo_vocabulary())]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast.from_pretrained(folder, do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(1)
    BertModel(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    ).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_teacher_and_student_with_different_vocabularies(bertq, tiny_model, other_vocab_model, tiny_data):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train, dev = tiny_data
    bertq.start_worker()
    parent = _submit(
        bertq,
        "distill",
        "--teacher",
        str(tiny_model),
        "--student",
        str(other_vocab_model),
        "--task",
        "sst2",
        "--train",
        str(train),
        "--eval",
        str(dev),
        "--max-length",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--lr",
        "2e-3",
    )
    assert bertq.run("wait", str(parent), "--timeout", "400").returncode == 0
    steps = _steps(bertq.json("show", str(parent)))
    teacher_folder = bertq.json("show", str(steps["finetune"][0]))["artifacts"][0]["path"]
    stored = np.load(bertq.json("show", str(steps["teacher_outputs"][0]))["artifacts"][0]["path"])
    soft = dict(zip(stored["ids"].tolist(), stored["logits"]))

    from bertq.worker.families import worker_family

    def example_id(sentence: str) -> str:
        return worker_family("classification").example_id((sentence, None))

    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_folder).eval()
    own_tokenizer = AutoTokenizer.from_pretrained(teacher_folder)
    student_tokenizer = AutoTokenizer.from_pretrained(other_vocab_model)
    sentences = [line.split("\t")[0] for line in train.read_text().splitlines()[1:21]]
    own_error = foreign_error = 0.0
    for sentence in sentences:
        own = own_tokenizer(sentence, return_tensors="pt")
        foreign = student_tokenizer(sentence, return_tensors="pt")
        assert not torch.equal(own["input_ids"], foreign["input_ids"])  # the vocabularies really differ
        with torch.no_grad():
            with_own_ids = teacher(**own).logits[0].numpy()
            with_student_ids = teacher(**foreign).logits[0].numpy()
        own_error = max(own_error, float(np.abs(soft[example_id(sentence)] - with_own_ids).max()))
        foreign_error = max(foreign_error, float(np.abs(soft[example_id(sentence)] - with_student_ids).max()))
    # The stored soft labels are what the teacher says for its own token ids, not for the student's.
    assert own_error < 1e-6
    assert foreign_error > 1000 * max(own_error, 1e-9)
    student_view = bertq.json("show", str(steps["student"][0]))
    assert student_view["status"] == "SUCCEEDED"
    assert (
        AutoTokenizer.from_pretrained(student_view["artifacts"][0]["path"]).vocab
        == AutoTokenizer.from_pretrained(other_vocab_model).vocab
    )


@pytest.mark.slow
def test_a_failed_step_marks_the_rest_not_run_and_the_pipeline_says_why(bertq, tiny_model, tiny_data, tmp_path):
    train, dev = tiny_data
    doomed = tmp_path / "train.tsv"
    doomed.write_text(train.read_text())
    parent = _submit(
        bertq,
        "distill",
        "--teacher",
        str(tiny_model),
        "--student",
        "teacher",
        "--student-layers",
        "1",
        "--task",
        "sst2",
        "--train",
        str(doomed),
        "--eval",
        str(dev),
        "--max-length",
        "32",
    )
    doomed.unlink()
    bertq.start_worker()
    assert bertq.run("wait", str(parent), "--timeout", "300").returncode == 1
    view = bertq.json("show", str(parent))
    steps = _steps(view)
    finetune = steps["finetune"][0]
    assert view["status"] == "FAILED"
    assert f"step {finetune} (finetune) failed" in view["error"] and str(doomed) in view["error"]
    others = [c for c in view["children"] if c["id"] != finetune]
    assert others and all(c["status"] == "CANCELLED" for c in others)
    assert "not run" in bertq.json("show", str(steps["student"][0]))["error"]


def test_distill_bad_inputs_are_refused(bertq, tiny_model, tiny_data, tmp_path):
    train, dev = tiny_data
    base = [
        "submit",
        "distill",
        "--teacher",
        str(tiny_model),
        "--task",
        "sst2",
        "--train",
        str(train),
        "--eval",
        str(dev),
        "--max-length",
        "32",
    ]
    cases = [
        (["--student", "teacher", "--student-layers", "0,7"], "within the teacher's layers 0..1"),
        (["--student", "teacher", "--student-layers", "1", "--alpha", "1.5"], "--alpha must be between 0 and 1"),
        (["--student", "teacher", "--student-layers", "1", "--temperature", "0"], "--temperature must be more than 0"),
        (["--student", "teacher"], "needs --student-layers"),
        (["--student", "teacher", "--student-layers", "1", "--hidden-loss-weight", "-1"], "must be 0 (off) or more"),
        (
            ["--student", "teacher", "--student-layers", "1", "--attention-loss-weight", "1", "--layer-map", "0,1"],
            "the student has 1 layer; give one teacher layer for each",
        ),
        (["--student", "teacher", "--student-layers", "1", "--layer-map", "1"], "give --hidden-loss-weight or"),
    ]
    for extra, words in cases:
        result = bertq.run(*base, *extra)
        assert result.returncode == 2 and words in result.stderr, (extra, result.stderr)
    ner = tmp_path / "ner.txt"
    ner.write_text("EU NNP B-ORG\n")
    squad = tmp_path / "squad.json"
    squad.write_text('{"data": []}')
    teacher = ["submit", "distill", "--teacher", str(tiny_model), "--student", "teacher", "--student-layers", "1"]
    result = bertq.run(*teacher, "--task", "qa", "--train", str(squad), "--eval", str(squad))
    assert result.returncode == 2 and "distill does not support qa (question answering)" in result.stderr
    assert "character offsets" in result.stderr
    result = bertq.run(*teacher, "--task", "ner", "--train", str(ner), "--eval", str(ner), "--transfer-data", str(ner))
    assert result.returncode == 2 and "leave --transfer-data out" in result.stderr

    # A student whose head has another label count than the teacher's.
    from transformers import AutoModelForSequenceClassification

    three = tmp_path / "three-class"
    AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=3).save_pretrained(three)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        if (tiny_model / name).exists():
            (three / name).write_bytes((tiny_model / name).read_bytes())
    result = bertq.run(*base, "--student", str(three))
    assert result.returncode == 2 and "same label count" in result.stderr

    # A teacher job that failed.
    from bertq.db import jobs as q

    with bertq.sessions()() as session, session.begin():
        job = q.create_job(
            session=session, kind="finetune", spec={"task": "sst2"}, queue="cpu", priority=5, max_attempts=1
        )
        job.status = "FAILED"
        failed = job.id
    result = bertq.run("submit", "distill", "--teacher", str(failed), "--student", "teacher", "--student-layers", "1")
    assert result.returncode == 2 and "failed" in result.stderr
    assert [j["kind"] for j in bertq.json("jobs")] == ["finetune"]
