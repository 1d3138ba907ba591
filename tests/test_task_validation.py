"""Submit-time refusals for the NER, QA and evaluate paths: clear message, exit 2, nothing enqueued."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def qa_checkpoint(tiny_model, tmp_path_factory) -> Path:
    """The tiny encoder saved with a question-answering head."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny-qa")
    AutoModelForQuestionAnswering.from_pretrained(tiny_model).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return folder


def _refused(bertq, *args: str) -> str:
    result = bertq.run("submit", *args)
    assert result.returncode == 2, f"{args}: exit {result.returncode}\n{result.stdout}{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stderr


def test_ner_and_qa_bad_inputs_are_refused(bertq, tiny_model, tmp_path):
    model = ["--model", str(tiny_model), "--max-length", "32"]
    good_ner = tmp_path / "good.txt"
    good_ner.write_text("EU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\n")
    malformed = tmp_path / "malformed.txt"
    malformed.write_text("EU NNP B-ORG\nrejects VBZ O\nGerman B-MISC\n")
    unseen = tmp_path / "unseen.txt"
    unseen.write_text("Paris NNP B-LOC\n")
    message = _refused(bertq, "finetune", *model, "--task", "ner", "--train", str(malformed), "--eval", str(good_ner))
    assert "malformed.txt" in message and "line 3" in message
    message = _refused(bertq, "finetune", *model, "--task", "ner", "--train", str(good_ner), "--eval", str(unseen))
    assert "unseen.txt" in message and "B-LOC" in message

    squad = {
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": "the cast was dull .",
                        "qas": [
                            {
                                "id": "q-offset",
                                "question": "what was the cast ?",
                                "answers": [{"text": "dull", "answer_start": 3}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    wrong_offset = tmp_path / "offset.json"
    wrong_offset.write_text(json.dumps(squad))
    message = _refused(
        bertq, "finetune", *model, "--task", "squad", "--train", str(wrong_offset), "--eval", str(wrong_offset)
    )
    assert "q-offset" in message and "offset" in message
    squad["data"][0]["paragraphs"][0]["context"] = ""
    squad["data"][0]["paragraphs"][0]["qas"][0]["id"] = "q-empty"
    empty_context = tmp_path / "empty.json"
    empty_context.write_text(json.dumps(squad))
    message = _refused(
        bertq, "finetune", *model, "--task", "squad", "--train", str(empty_context), "--eval", str(empty_context)
    )
    assert "q-empty" in message and "context" in message
    assert bertq.json("jobs") == []


def test_a_model_whose_head_does_not_fit_the_task_is_refused(bertq, tiny_model, qa_checkpoint, tmp_path):
    data = tmp_path / "ner.txt"
    data.write_text("EU NNP B-ORG\nrejects VBZ O\n")
    message = _refused(
        bertq,
        "finetune",
        "--model",
        str(qa_checkpoint),
        "--task",
        "ner",
        "--train",
        str(data),
        "--eval",
        str(data),
        "--max-length",
        "32",
    )
    assert "question answering checkpoint" in message and "ForTokenClassification" in message
    # Evaluating a bare encoder would score a random head: refused too.
    message = _refused(
        bertq, "evaluate", "--model", str(tiny_model), "--task", "ner", "--data", str(data), "--max-length", "32"
    )
    assert "no trained token classification (NER) head" in message
    assert bertq.json("jobs") == []


def test_evaluate_refuses_bad_precision_device_pairs_and_failed_jobs(bertq, qa_checkpoint, tmp_path, tiny_data):
    squad = {
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": "the cast was dull .",
                        "qas": [
                            {
                                "id": "q1",
                                "question": "what was the cast ?",
                                "answers": [{"text": "dull", "answer_start": 13}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    data = tmp_path / "squad.json"
    data.write_text(json.dumps(squad))
    message = _refused(
        bertq,
        "evaluate",
        "--model",
        str(qa_checkpoint),
        "--task",
        "squad",
        "--data",
        str(data),
        "--precision",
        "int8",
        "--device",
        "cuda",
        "--max-length",
        "32",
    )
    assert "int8" in message and "--device cpu" in message
    message = _refused(bertq, "evaluate", "--model", "12345", "--task", "squad", "--data", str(data))
    assert "no job 12345" in message

    # A fine-tune that failed has no model to evaluate.
    from bertq.db import jobs as q
    from bertq.db.models import Job

    with bertq.sessions()() as session, session.begin():
        job = q.create_job(
            session=session,
            kind="finetune",
            spec={"task": "sst2", "family": "classification"},
            queue="cpu",
            priority=5,
            max_attempts=1,
        )
        job.status = "FAILED"
        failed_id = job.id
    message = _refused(bertq, "evaluate", "--model", str(failed_id), "--data", str(tiny_data[1]))
    assert f"job {failed_id} failed" in message
    with bertq.sessions()() as session:
        assert session.query(Job).count() == 1  # the failed job alone: nothing was added


def test_pickle_only_weights_are_refused(bertq, tiny_model, tiny_data, tmp_path):
    import shutil

    import torch
    from transformers import AutoModel

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save(AutoModel.from_pretrained(tiny_model).state_dict(), pickled / "pytorch_model.bin")
    train, dev = tiny_data
    message = _refused(
        bertq,
        "finetune",
        "--model",
        str(pickled),
        "--task",
        "sst2",
        "--train",
        str(train),
        "--eval",
        str(dev),
        "--max-length",
        "32",
    )
    assert "pickle" in message and "pytorch_model.bin" in message and "safetensors" in message


def test_resume_ignores_a_checkpoint_whose_save_was_interrupted(tmp_path):
    from bertq.worker.training import COMPLETE_MARKER, last_complete_checkpoint

    complete = tmp_path / "1" / "checkpoint-10"
    complete.mkdir(parents=True)
    (complete / COMPLETE_MARKER).write_text("{}")
    interrupted = tmp_path / "2" / "checkpoint-20"  # newer, but its save never finished
    interrupted.mkdir(parents=True)
    (interrupted / "model.safetensors").write_bytes(b"half")
    assert last_complete_checkpoint(tmp_path) == complete


def test_an_attempt_with_nothing_to_resume_from_replaces_the_steps_an_earlier_one_logged(tmp_path):
    """Attempt 1 logged steps 1-2 and died before its first checkpoint: attempt 2 trains from the start
    and logs them again, so the old rows go (the soak found them doubled)."""
    from bertq.worker.context import LocalContext
    from bertq.worker.training import resume_point

    ctx = LocalContext(workdir=tmp_path, attempt=2)
    ctx.metrics({"train_loss": 0.69}, step=1)
    ctx.metrics({"train_loss": 0.68}, step=2)
    ctx.metrics({"tokens": 100.0})  # not a step's: kept
    assert resume_point(ctx) is None
    assert ctx.reported_metrics == [({"tokens": 100.0}, None, None)]
