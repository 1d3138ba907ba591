"""Bad input is refused at submit: a clear message, exit status 2, nothing enqueued, no job row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _redis_queue_length(bertq, queue: str = "cpu") -> int:
    import redis

    from bertq.broker import broker_url

    client = redis.Redis.from_url(broker_url(bertq.settings()))
    # Celery's Redis transport keeps one list per priority step: "cpu", "cpu:1" ... "cpu:9".
    keys = [queue, *(k.decode() for k in client.keys(f"{queue}:*"))]
    return sum(client.llen(k) for k in keys if client.type(k) == b"list")


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.fixture
def good(tiny_model, tiny_data):
    train, dev = tiny_data
    return {
        "--model": str(tiny_model),
        "--task": "sst2",
        "--train": str(train),
        "--eval": str(dev),
        "--max-length": "32",
    }


def _cases(tmp: Path) -> list[tuple[str, dict[str, str | None], str]]:
    """(case, options that replace the good ones (None: left out), words the error must contain)."""
    no_label = _write(tmp / "no_label.tsv", "sentence\tstars\ngood\t1\nbad\t0\n")
    empty = _write(tmp / "empty.tsv", "sentence\tlabel\n")
    continuous = _write(
        tmp / "scores.tsv", "sentence\tlabel\n" + "".join(f"text {i}\t{i / 7:.4f}\n" for i in range(300))
    )
    latin1 = _write(tmp / "latin1.tsv", b"sentence\tlabel\ngood\t1\n" + "caf\xe9 bad\t0\n".encode("latin-1"))
    one_class = _write(tmp / "one.tsv", "sentence\tlabel\ngood\t1\nfine\t1\n")
    ragged = _write(tmp / "ragged.tsv", "sentence\tlabel\ngood\t1\nbad\t0\textra\n")
    return [
        ("unknown alias", {"--model": "bertish"}, "unreachable"),
        ("missing model folder", {"--model": str(tmp / "no-such-model")}, "does not exist"),
        ("folder without config", {"--model": str(tmp)}, "no config.json"),
        ("missing train file", {"--train": str(tmp / "nope.tsv")}, "no file"),
        ("own --train without --eval", {"--eval": None}, "--eval is missing"),
        ("missing label column", {"--train": str(no_label)}, "no column 'label'"),
        ("missing text column", {"--text-column": "review_body"}, "no column 'review_body'"),
        ("a column name's typo", {"--text-column": "sentense"}, "no column 'sentense' (did you mean 'sentence'?)"),
        ("empty data", {"--train": str(empty)}, "no examples"),
        ("labels not a small set", {"--train": str(continuous)}, "not a small set of classes"),
        ("a single class", {"--train": str(one_class)}, "at least two classes"),
        ("undecodable bytes", {"--train": str(latin1)}, "line 3"),
        ("ragged line", {"--train": str(ragged)}, "line 3"),
        ("unknown task", {"--task": "summarise"}, "unknown task"),
        ("zero epochs", {"--epochs": "0"}, "--epochs"),
        ("negative lr", {"--lr": "-1e-5"}, "--lr"),
        ("zero batch size", {"--batch-size": "0"}, "--batch-size"),
        ("max length beyond the model", {"--max-length": "4096"}, "longer than"),
        ("priority out of range", {"--priority": "12"}, "--priority"),
        ("bad queue name", {"--queue": "gpu;drop"}, "--queue"),
    ]


def test_each_bad_input_is_refused_with_nothing_enqueued(bertq, good, tmp_path):
    bertq.run("up", check=True)
    for case, change, words in _cases(tmp_path):
        options = {k: v for k, v in {**good, **change}.items() if v is not None}
        argv = ["submit", "finetune", *[x for kv in options.items() for x in kv]]
        result = bertq.run(*argv)
        assert result.returncode == 2, f"{case}: exit {result.returncode}\n{result.stdout}{result.stderr}"
        assert words in result.stderr, f"{case}: {result.stderr!r} lacks {words!r}"
        assert "Traceback" not in result.stderr, case
    assert bertq.json("jobs") == []
    assert _redis_queue_length(bertq) == 0


def test_all_problems_are_reported_at_once(bertq, good):
    result = bertq.run(
        "submit",
        "finetune",
        *[x for kv in {**good, "--epochs": "0", "--lr": "0", "--batch-size": "-1"}.items() for x in kv],
    )
    assert result.returncode == 2
    assert all(flag in result.stderr for flag in ("--epochs", "--lr", "--batch-size"))


def test_hub_model_offline_fails_fast_with_how_to_use_a_local_folder(bertq, good):
    env = dict(bertq.env)
    env.pop("HF_HUB_OFFLINE")  # the real path: try the network, which is not there
    bertq_online = type(bertq)(home=bertq.home, env=env)
    result = bertq_online.run(
        "submit", "finetune", *[x for kv in {**good, "--model": "roberta"}.items() for x in kv], timeout=30
    )
    assert result.returncode == 2
    assert "roberta-base" in result.stderr and "--local-dir" in result.stderr and "minilm" in result.stderr


def test_a_good_submit_enqueues_exactly_one_message(bertq, good):
    job_id = json.loads(
        bertq.run("submit", "finetune", *[x for kv in good.items() for x in kv], "--json", check=True).stdout
    )["id"]
    assert _redis_queue_length(bertq) == 1
    view = bertq.json("show", str(job_id))
    assert view["status"] == "QUEUED" and view["spec"]["labels"] == ["0", "1"]
    assert view["spec"]["label_names"] == ["negative", "positive"]


def test_cancel_a_queued_job_and_it_never_runs(bertq, good):
    job_id = json.loads(
        bertq.run("submit", "finetune", *[x for kv in good.items() for x in kv], "--json", check=True).stdout
    )["id"]
    assert bertq.run("cancel", str(job_id)).returncode == 0
    assert bertq.json("show", str(job_id))["status"] == "CANCELLED"
    again = bertq.run("cancel", str(job_id))
    assert again.returncode == 2 and "already ended" in again.stderr
    assert bertq.run("wait", str(job_id)).returncode == 1


def test_show_of_a_missing_job_is_a_clear_error(bertq):
    result = bertq.run("show", "999")
    assert result.returncode == 2 and "no job 999" in result.stderr
