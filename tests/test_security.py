"""Nobody let in: model code and pickle weights only when a job opts in, paths only inside the
allowed roots, and user text never reaching SQL. Each refusal is checked twice: in the CLI (nothing
enqueued) and in the worker, against a job whose spec was forged past the CLI."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from helpers import wait_for as _wait_for

pytestmark = pytest.mark.slow

CUSTOM_CODE = """
from pathlib import Path

Path({marker!r}).write_text("the model's own code ran")

from transformers import BertConfig, BertModel


class CustomConfig(BertConfig):
    model_type = "custom-bert"


class CustomModel(BertModel):
    config_class = CustomConfig
"""


def _job_count(bertq) -> int:
    from sqlalchemy import func, select

    from bertq.db.models import Job

    with bertq.sessions()() as session:
        return session.scalar(select(func.count()).select_from(Job))


def _forge(bertq, kind: str, spec: dict) -> int:
    """A job row written straight to the database and its id published to the queue: the CLI's
    checks never saw it."""
    from bertq.db import jobs as q
    from bertq.worker.app import make_app

    with bertq.sessions()() as session, session.begin():
        job_id = q.create_job(session=session, kind=kind, spec=spec, queue="cpu", priority=5, max_attempts=3).id
    make_app(bertq.settings()).send_task(f"bertq.{kind}", args=[job_id], queue="cpu")
    return job_id


def _failed_with(bertq, job_id: int, *words: str) -> dict:
    view = _wait_for(
        lambda: (v := bertq.json("show", str(job_id)))["status"] in ("FAILED", "SUCCEEDED") and v, timeout=120
    )
    assert view["status"] == "FAILED", view
    assert all(word in view["error"] for word in words), view["error"]
    return view


def _finetune_spec(bertq, model: Path, train: Path, dev: Path, **flags: bool) -> dict:
    from bertq.specs import build_finetune_spec

    return build_finetune_spec(
        model=str(model),
        task="sst2",
        train=str(train),
        eval=str(dev),
        max_length=32,
        batch_size=8,
        epochs=1,
        evaluate=False,
        **flags,
    ).to_dict()


def test_model_code_and_pickle_weights_load_only_when_the_job_allows_them(
    bertq_any_db, tiny_model, tiny_data, tmp_path
):
    bertq = bertq_any_db
    import torch
    from transformers import AutoModel

    marker = tmp_path / "remote-code-ran"
    custom = tmp_path / "custom-model"
    shutil.copytree(tiny_model, custom)
    config = json.loads((custom / "config.json").read_text())
    config.update(
        model_type="custom-bert",
        architectures=["CustomModel"],
        auto_map={"AutoConfig": "custom_bert.CustomConfig", "AutoModel": "custom_bert.CustomModel"},
    )
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "custom_bert.py").write_text(CUSTOM_CODE.format(marker=str(marker)))
    pickled = tmp_path / "pickled-model"
    shutil.copytree(tiny_model, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save(AutoModel.from_pretrained(tiny_model).state_dict(), pickled / "pytorch_model.bin")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"a good movie number {i}\n" for i in range(40)))
    train, dev = tiny_data

    def infer(model: Path, name: str, *flags: str):  # type: ignore[no-untyped-def]
        return bertq.run(
            "submit",
            "infer",
            "--model",
            str(model),
            "--task",
            "embed",
            "--input",
            str(corpus),
            "--output",
            str(tmp_path / name),
            "--shards",
            "1",
            "--json",
            *flags,
        )

    # The CLI refuses both without the flag, names the file and the flag, and enqueues nothing.
    refused = infer(custom, "out-custom")
    assert refused.returncode == 2 and "custom_bert.py" in refused.stderr and "--trust-remote-code" in refused.stderr
    refused = infer(pickled, "out-pickled")
    assert refused.returncode == 2 and "pytorch_model.bin" in refused.stderr and "--allow-pickle" in refused.stderr
    assert _job_count(bertq) == 0 and not marker.exists()

    # A forged job without the opt-in fails in the worker before the model's code runs.
    bertq.start_worker()
    forged_code = _forge(
        bertq,
        "finetune",
        {**_finetune_spec(bertq, custom, train, dev, trust_remote_code=True), "trust_remote_code": False},
    )
    forged_pickle = _forge(
        bertq, "finetune", {**_finetune_spec(bertq, pickled, train, dev, allow_pickle=True), "allow_pickle": False}
    )
    _failed_with(bertq, forged_code, "custom_bert.py", "--trust-remote-code")
    _failed_with(bertq, forged_pickle, "pytorch_model.bin", "--allow-pickle")
    assert not marker.exists()

    # With the flag, the job loads them and runs.
    for model, name, flag in (
        (custom, "out-custom", "--trust-remote-code"),
        (pickled, "out-pickled", "--allow-pickle"),
    ):
        job = json.loads(infer(model, name, flag).stdout)["id"]
        assert bertq.run("wait", str(job), "--timeout", "180").returncode == 0
        [part] = (tmp_path / name).glob("part-*.jsonl")
        lines = part.read_text().splitlines()
        assert len(lines) == 40 and len(json.loads(lines[0])["embedding"]) == 32
    assert marker.read_text() == "the model's own code ran"


def test_paths_outside_the_allowed_roots_are_refused_in_the_cli_and_in_the_worker(
    bertq_any_db, tiny_model, tiny_data, tmp_path
):
    bertq = bertq_any_db
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    bertq.env["BERTQ_ALLOWED_ROOTS"] = str(allowed)
    model = shutil.copytree(tiny_model, allowed / "model")
    train, dev = (Path(shutil.copy(f, allowed / f.name)) for f in tiny_data)
    secret = Path(shutil.copy(tiny_data[0], outside / "secret.tsv"))
    (allowed / "link-to-secret.tsv").symlink_to(secret)
    (allowed / "link-to-outside").symlink_to(outside, target_is_directory=True)
    before = sorted(p.name for p in outside.iterdir())

    def finetune(train_path: str, model_path: str = str(model)):  # type: ignore[no-untyped-def]
        return bertq.run(
            "submit",
            "finetune",
            "--model",
            model_path,
            "--task",
            "sst2",
            "--train",
            train_path,
            "--eval",
            str(dev),
            "--max-length",
            "32",
            "--no-evaluate",
        )

    cases = {
        "../ out of a root": finetune(str(allowed / ".." / "outside" / "secret.tsv")),
        "absolute path outside": finetune(str(secret)),
        "symlink leaving the root": finetune(str(allowed / "link-to-secret.tsv")),
        "model folder outside": finetune(str(train), model_path=str(tiny_model)),
        "output through a symlink": bertq.run(
            "submit",
            "infer",
            "--model",
            str(model),
            "--task",
            "embed",
            "--input",
            str(train),
            "--text-column",
            "sentence",
            "--output",
            str(allowed / "link-to-outside" / "out"),
        ),
    }
    for case, result in cases.items():
        assert result.returncode == 2 and "outside the allowed roots" in result.stderr, (case, result.stderr)
        assert "BERTQ_ALLOWED_ROOTS" in result.stderr
    # A new user's refusal named the eval file twice (as the fine-tune's eval and its evaluate job's
    # data) and listed roots twice: each path is one line, and each root is listed once.
    bertq.env["BERTQ_ALLOWED_ROOTS"] = f"{allowed}:{allowed}/"
    both = bertq.run("submit", "finetune", "--model", str(model), "--task", "sst2", "--train", str(train),
                     "--eval", str(secret), "--max-length", "32")  # fmt: skip
    assert both.returncode == 2 and both.stderr.count(str(secret)) == 1, both.stderr
    assert f"eval and data '{secret}' is outside the allowed roots ({allowed}, " in both.stderr
    assert f"({allowed}, {allowed}" not in both.stderr
    bertq.env["BERTQ_ALLOWED_ROOTS"] = str(allowed)
    assert _job_count(bertq) == 0

    # Forged specs: each fails in the worker, naming the problem, and writes nothing outside the roots.
    good = _finetune_spec(bertq, model, train, dev)
    forged = {
        "dot-dot": _forge(bertq, "finetune", {**good, "train": str(allowed / ".." / "outside" / "secret.tsv")}),
        "outside": _forge(bertq, "finetune", {**good, "train": str(secret)}),
        "nul": _forge(bertq, "finetune", {**good, "eval": str(dev) + "\x00.tsv"}),
        "relative": _forge(bertq, "finetune", {**good, "train": "../outside/secret.tsv"}),
        "output": _forge(
            bertq,
            "infer_shard",
            {
                "model": "m",
                "model_location": str(model),
                "task": "embed",
                "inputs": [str(train)],
                "output": str(outside / "out"),
                "shard": {"path": str(train)},
            },
        ),
    }
    # The artifact root: a job folder that is a symlink to elsewhere is not written through.
    jobs_root = bertq.settings().artifacts / "jobs"
    jobs_root.mkdir(parents=True, exist_ok=True)
    next_id = max(forged.values()) + 1
    (jobs_root / str(next_id)).symlink_to(outside, target_is_directory=True)
    assert _forge(bertq, "finetune", good) == next_id
    bertq.start_worker()
    _failed_with(bertq, forged["dot-dot"], "refused", "not an absolute, normalised path")
    _failed_with(bertq, forged["outside"], "refused", "outside the allowed roots")
    _failed_with(bertq, forged["nul"], "refused", "NUL byte")
    _failed_with(bertq, forged["relative"], "refused", "not an absolute, normalised path")
    _failed_with(bertq, forged["output"], "refused", "output", "outside the allowed roots")
    _failed_with(bertq, next_id, "refused", "outside the artifact root")
    time.sleep(1)
    assert sorted(p.name for p in outside.iterdir()) == before  # nothing written outside the roots

    # SQL in names and sort keys is refused before any query; the tables are intact.
    for argv in (
        ["jobs", "--sort", "id; DROP TABLE jobs"],
        ["jobs", "--kind", "finetune' OR '1'='1"],
        ["schedule", "add", "x'; DROP TABLE schedules; --", "--cron", "0 2 * * *", "--", "submit", "infer"],
    ):
        result = bertq.run(*argv)
        assert result.returncode == 2 and ("Invalid value" in result.stderr or "schedule name" in result.stderr), argv
    listed = bertq.json("jobs", "--sort", "oldest")
    assert [job["id"] for job in listed] == sorted(forged.values()) + [next_id]
    assert all(job["status"] == "FAILED" for job in listed)
    assert bertq.run("schedule", "list", check=True).returncode == 0


def test_stored_spec_paths_nul_bytes_and_hub_ids_that_are_folders(bertq, tmp_path, monkeypatch):
    """NUL bytes cannot arrive through a command line (argv is NUL-terminated); the check that guards
    stored specs refuses them wherever else they come from. A hub id is not a path, unless a folder
    of that name exists where the worker runs: transformers would load that folder instead."""
    from bertq.safety import spec_problems

    settings = bertq.settings()
    problems = spec_problems(
        {"train": str(tmp_path / "a\x00b.tsv"), "model_location": "bert-base-uncased", "eval": "hub:glue:validation"},
        settings,
    )
    assert problems == [f"train {str(tmp_path / 'a') + chr(0) + 'b.tsv'!r} contains a NUL byte; give a plain file name"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "model").mkdir(parents=True)
    [problem] = spec_problems({"model_location": "org/model"}, settings)
    assert "not an absolute, normalised path" in problem
    assert spec_problems({"model_location": "org/other-model"}, settings) == []
    # A "hub:" dataset name that is a local folder would be loaded from disk by `datasets`.
    [problem] = spec_problems({"train": "hub:org/model"}, settings)
    assert "not a Hub dataset id" in problem
    assert spec_problems({"train": "hub:stanfordnlp/sst2:validation"}, settings) == []
    # Fields that become part of a file name, and paths that cannot be resolved.
    assert spec_problems({"format": "x/../../elsewhere"}, settings) == [
        "format 'x/../../elsewhere': choose jsonl or parquet"
    ]
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    [problem] = spec_problems({"data": str(tmp_path / "loop")}, settings)
    assert "cannot be resolved" in problem
