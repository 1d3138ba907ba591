"""NER, QA and classification fine-tunes through real workers, and the evaluate job's records."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from bertq.demo import NEGATIVE, POSITIVE, SUBJECTS

pytestmark = pytest.mark.slow

DEPLOYMENT_METRICS = ("params", "size_mb", "peak_memory_mb", "latency_p50_ms", "latency_p95_ms", "throughput_per_s")


@pytest.fixture(scope="module")
def ner_data(tmp_path_factory) -> tuple[Path, Path]:
    """CoNLL columns (token POS chunk tag): adjectives are tagged as entities of two types."""
    folder = tmp_path_factory.mktemp("ner")
    rng = random.Random(3)
    paths = []
    for name, count in (("train", 120), ("valid", 40)):
        lines = ["-DOCSTART- -X- -X- O", ""]
        for _ in range(count):
            subject = rng.choice(SUBJECTS).split()
            adjective = rng.choice(POSITIVE + NEGATIVE)
            tag = "B-POS" if adjective in POSITIVE else "B-NEG"
            words = [*subject, "was", adjective, "."]
            tags = ["O"] * (len(subject) + 1) + [tag, "O"]
            lines += [f"{w} X X {t}" for w, t in zip(words, tags)] + [""]
        path = folder / f"{name}.txt"
        path.write_text("\n".join(lines))
        paths.append(path)
    return paths[0], paths[1]


@pytest.fixture(scope="module")
def qa_data(tmp_path_factory) -> Path:
    """SQuAD v1.1 JSON with six articles of sentences made from the demo vocabulary."""
    rng = random.Random(5)
    articles = []
    for a in range(6):
        paragraphs = []
        for p in range(4):
            subject = rng.choice(SUBJECTS)
            adjective = rng.choice(POSITIVE + NEGATIVE)
            filler = f"{rng.choice(SUBJECTS)} was {rng.choice(NEGATIVE)} ."
            context = f"{filler} {subject} was {adjective} . {filler}"
            start = context.index(f"{subject} was {adjective}") + len(f"{subject} was ")
            paragraphs.append(
                {
                    "context": context,
                    "qas": [
                        {
                            "id": f"a{a}p{p}",
                            "question": f"{subject} was ?",
                            "answers": [{"text": adjective, "answer_start": start}],
                        }
                    ],
                }
            )
        articles.append({"title": f"article {a}", "paragraphs": paragraphs})
    path = tmp_path_factory.mktemp("qa") / "squad.json"
    path.write_text(json.dumps({"version": "1.1", "data": articles}))
    return path


def _submit(bertq, *args: str) -> int:
    return json.loads(bertq.run("submit", *args, "--json", check=True).stdout)["id"]


def _children(bertq, parent_id: int) -> list[dict]:
    return bertq.json("show", str(parent_id))["children"]


def test_classification_finetune_evaluates_its_checkpoint_with_deployment_numbers(bertq, tiny_model, tiny_data):
    train, dev = tiny_data
    bertq.start_worker()
    job_id = _submit(
        bertq,
        "finetune",
        "--model",
        str(tiny_model),
        "--task",
        "sst2",
        "--train",
        str(train),
        "--eval",
        str(dev),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
        "--max-length",
        "32",
    )
    [evaluation] = _children(bertq, job_id)
    assert evaluation["kind"] == "evaluate" and evaluation["status"] == "WAITING"
    assert bertq.run("wait", str(evaluation["id"]), "--timeout", "300").returncode == 0

    trained = bertq.json("show", str(job_id))
    measured = bertq.json("show", str(evaluation["id"]))
    # The same checkpoint on the same data scores the same through both paths.
    assert measured["metrics"]["accuracy"] == pytest.approx(trained["metrics"]["eval_accuracy"], abs=1e-9)
    assert measured["metrics"]["f1"] == pytest.approx(trained["metrics"]["eval_f1"], abs=1e-9)
    for name in DEPLOYMENT_METRICS:
        assert measured["metrics"][name] > 0, name
    assert measured["metrics"]["latency_p95_ms"] >= measured["metrics"]["latency_p50_ms"]
    assert measured["device"] == "cpu" and measured["precision"] == "fp32"
    assert measured["result"]["torch_version"] and measured["result"]["transformers_version"]
    assert measured["result"]["latency_samples"] == 48  # every dev example, 48 < 200
    params = measured["metrics"]["params"]
    assert measured["metrics"]["size_mb"] == pytest.approx(params * 4 / 1e6, rel=0.05)  # fp32: 4 bytes a weight

    # int8 and bf16 of the same finished job: quantised weights are smaller.
    int8 = _submit(bertq, "evaluate", "--model", str(job_id), "--precision", "int8", "--latency-samples", "20")
    bf16 = _submit(bertq, "evaluate", "--model", str(job_id), "--precision", "bf16", "--latency-samples", "20")
    for other in (int8, bf16):
        assert bertq.run("wait", str(other), "--timeout", "300").returncode == 0
    int8_view, bf16_view = bertq.json("show", str(int8)), bertq.json("show", str(bf16))
    assert int8_view["precision"] == "int8" and int8_view["metrics"]["params"] == params
    assert bf16_view["metrics"]["size_mb"] == pytest.approx(measured["metrics"]["size_mb"] / 2, rel=0.05)
    assert 0 <= int8_view["metrics"]["accuracy"] <= 1


def test_ner_finetune_labels_first_subtokens_and_reports_entity_scores(bertq, tiny_model, ner_data):
    train, valid = ner_data
    bertq.start_worker()
    job_id = _submit(
        bertq,
        "finetune",
        "--model",
        str(tiny_model),
        "--task",
        "conll2003",
        "--train",
        str(train),
        "--eval",
        str(valid),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "2e-3",
        "--max-length",
        "32",
    )
    [evaluation] = _children(bertq, job_id)
    assert bertq.run("wait", str(evaluation["id"]), "--timeout", "300").returncode == 0
    trained = bertq.json("show", str(job_id))
    assert {"eval_entity_f1", "eval_entity_precision", "eval_entity_recall"} <= set(trained["metrics"])
    measured = bertq.json("show", str(evaluation["id"]))
    assert measured["metrics"]["entity_f1"] == pytest.approx(trained["metrics"]["eval_entity_f1"], abs=1e-9)
    for name in DEPLOYMENT_METRICS:
        assert measured["metrics"][name] > 0, name
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(trained["artifacts"][0]["path"])
    assert set(config.id2label.values()) == {"O", "B-NEG", "I-NEG", "B-POS", "I-POS"}


def test_qa_finetune_on_an_article_split_reports_exact_match_and_f1(bertq, tiny_model, qa_data):
    bertq.start_worker()
    job_id = _submit(
        bertq,
        "finetune",
        "--model",
        str(tiny_model),
        "--task",
        "squad",
        "--train",
        str(qa_data),
        "--split-by",
        "article",
        "--eval-fraction",
        "0.34",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--max-length",
        "24",
        "--stride",
        "8",
    )
    [evaluation] = _children(bertq, job_id)
    assert bertq.run("wait", str(evaluation["id"]), "--timeout", "300").returncode == 0
    trained = bertq.json("show", str(job_id))
    measured = bertq.json("show", str(evaluation["id"]))
    assert 0 <= trained["metrics"]["eval_exact_match"] <= trained["metrics"]["eval_f1"] <= 1
    assert measured["metrics"]["f1"] == pytest.approx(trained["metrics"]["eval_f1"], abs=1e-9)
    assert measured["result"]["examples"] == 8  # 2 of 6 articles held out, 4 questions each
    for name in DEPLOYMENT_METRICS:
        assert measured["metrics"][name] > 0, name
