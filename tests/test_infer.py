"""Bulk inference through real workers: exactly one record per input, a worker killed midway, bad
input refused at submit, formats and tasks, out-of-memory back-off, and nightly schedules."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import POSTGRES_ONLY

from bertq.demo import make_examples

GOEMOTIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpus" / "goemotions_reddit_comments.tsv"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Plain text, one record per line, with empty lines and no trailing newline."""
    path = tmp_path_factory.mktemp("corpus") / "reviews.txt"
    lines = [text for text, _ in make_examples(3000, seed=11)]
    for position in (5, 500, 2500):
        lines.insert(position, "")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _records(folder: Path) -> list[dict]:
    manifest = json.loads((folder / "manifest.json").read_text())
    rows = []
    for entry in manifest["files"]:
        with open(folder / entry["path"], encoding="utf-8") as handle:
            rows += [json.loads(line) for line in handle]
    return rows


def _expected_ids(path: Path) -> list[str]:
    return [f"{path.name}:{n}" for n, line in enumerate(path.read_text().split("\n"), start=1) if line.strip()]


def _submit(bertq, *args: str) -> int:
    return json.loads(bertq.run("submit", "infer", *args, "--json", check=True).stdout)["id"]


@pytest.mark.slow
def test_classify_a_corpus_in_shards_exactly_one_record_per_line(bertq, tiny_classifier, corpus, tmp_path):
    bertq.start_worker()
    out = tmp_path / "labels-{date}"
    job = _submit(
        bertq,
        "--model",
        str(tiny_classifier),
        "--task",
        "classify",
        "--input",
        str(corpus),
        "--output",
        str(out),
        "--shards",
        "4",
        "--all-scores",
        "--precision",
        "fp32",
    )
    assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0
    folder = Path(str(out).replace("{date}", datetime.now().date().isoformat()))
    assert (folder / "_SUCCESS").exists()
    rows = _records(folder)
    assert [r["id"] for r in rows] == _expected_ids(corpus)
    assert all(r["label"] in ("negative", "positive") and set(r["scores"]) == {"negative", "positive"} for r in rows)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["records"] == 3000 and len(manifest["files"]) == 4
    view = bertq.json("show", str(job))
    assert view["status"] == "SUCCEEDED" and view["progress"] == 1.0
    assert view["progress_detail"]["rows"] == 3000 and view["progress_detail"]["total"] == 3000
    assert len([c for c in view["children"] if c["kind"] == "infer_shard"]) == 4

    # The same command again would overwrite nothing: the folder belongs to that job now.
    again = bertq.run(
        "submit",
        "infer",
        "--model",
        str(tiny_classifier),
        "--task",
        "classify",
        "--input",
        str(corpus),
        "--output",
        str(out),
    )
    assert again.returncode == 2 and f"the output of job {job}" in again.stderr


@pytest.mark.slow
@POSTGRES_ONLY
def test_a_worker_killed_midway_loses_nothing_and_duplicates_nothing(bertq_any_db, tiny_classifier, tmp_path):
    bertq = bertq_any_db
    corpus = tmp_path / "big.txt"
    corpus.write_text("\n".join(text for text, _ in make_examples(60000, seed=2)) + "\n")
    bertq.env["BERTQ_FAULT_STEP_SECONDS"] = "0.03"  # ~60 batches a shard: w1 is still mid-shard when killed
    first = bertq.start_worker(name="w1@%h")
    bertq.start_worker(name="w2@%h")
    beat = subprocess.Popen(
        [sys.executable, "-m", "bertq.cli", "beat", "--interval", "1"],
        env=bertq.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        job = _submit(
            bertq,
            "--model",
            str(tiny_classifier),
            "--task",
            "classify",
            "--input",
            str(corpus),
            "--output",
            str(tmp_path / "out"),
            "--shards",
            "8",
            "--precision",
            "fp32",
            "--token-budget",
            "2048",
        )
        # Wait until w1 is in the middle of a shard, then kill it (and its child) outright.
        from sqlalchemy import select

        from bertq.db.models import Job, ShardRow

        victim = None
        deadline = time.monotonic() + 120
        while victim is None and time.monotonic() < deadline:
            with bertq.sessions()() as session:
                for shard in session.scalars(select(ShardRow).where(ShardRow.job_id == job)):
                    running = session.get(Job, shard.shard_job_id)
                    if (
                        running.status == "RUNNING"
                        and "w1@" in (running.lease_owner or "")
                        and 0 < shard.rows_done < shard.records
                    ):
                        victim = running.id
            time.sleep(0.05)
        assert victim is not None, "never caught w1 mid-shard"
        os.killpg(first.pid, signal.SIGKILL)

        assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0
        rows = _records(tmp_path / "out")
        assert [r["id"] for r in rows] == _expected_ids(corpus)  # every line once, in order
        killed = bertq.json("show", str(victim))
        assert killed["status"] == "SUCCEEDED" and killed["attempts"] == 2
        assert [a["outcome"] for a in killed["attempt_history"]] == ["LOST", "SUCCEEDED"]
        leftovers = sorted(p.name for p in (tmp_path / "out").glob("part-*"))
        assert leftovers == sorted(
            f["path"] for f in json.loads((tmp_path / "out" / "manifest.json").read_text())["files"]
        )
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait()


@pytest.mark.slow
def test_jsonl_ids_parquet_output_embed_and_ner(bertq, tiny_model, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    records = tmp_path / "records.jsonl"
    texts = [text for text, _ in make_examples(200, seed=4)]
    records.write_text("".join(json.dumps({"doc": f"d{i}", "body": t}) + "\n" for i, t in enumerate(texts)))
    bertq.start_worker()
    embed = _submit(
        bertq,
        "--model",
        str(tiny_model),
        "--task",
        "embed",
        "--input",
        str(records),
        "--text-column",
        "body",
        "--id-column",
        "doc",
        "--output",
        str(tmp_path / "vectors"),
        "--format",
        "parquet",
        "--normalize",
    )
    ner_model = tmp_path / "tiny-ner"
    AutoModelForTokenClassification.from_pretrained(
        tiny_model, num_labels=3, id2label={0: "O", 1: "B-X", 2: "I-X"}, label2id={"O": 0, "B-X": 1, "I-X": 2}
    ).save_pretrained(ner_model)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(ner_model)
    ner = _submit(
        bertq,
        "--model",
        str(ner_model),
        "--task",
        "ner",
        "--input",
        str(records),
        "--text-column",
        "body",
        "--id-column",
        "doc",
        "--output",
        str(tmp_path / "entities"),
    )
    for job in (embed, ner):
        assert bertq.run("wait", str(job), "--timeout", "300").returncode == 0

    table = pq.read_table(next((tmp_path / "vectors").glob("part-*.parquet")))
    assert table.schema.field("id").type == pa.string() and table.schema.field("embedding").type == pa.list_(
        pa.float32()
    )
    assert table.column("id").to_pylist() == [f"d{i}" for i in range(200)]
    vector = table.column("embedding").to_pylist()[0]
    assert len(vector) == 32 and abs(sum(x * x for x in vector) - 1) < 1e-3

    rows = _records(tmp_path / "entities")
    assert [r["id"] for r in rows] == [f"d{i}" for i in range(200)]
    by_id = dict(zip((f"d{i}" for i in range(200)), texts))
    for row in rows:
        for entity in row["entities"]:
            assert by_id[row["id"]][entity["start"] : entity["end"]] == entity["text"] and entity["label"] == "X"


def test_bad_infer_input_is_refused_with_nothing_enqueued(bertq, tiny_classifier, corpus, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"good line\n" + "caf\xe9".encode("latin-1") + b"\nanother\n")
    table = tmp_path / "table.tsv"
    table.write_text("id\tbody\n1\thello\n")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "part-00000.attempt-1.jsonl").write_text("{}\n")
    base = ["submit", "infer", "--model", str(tiny_classifier), "--task", "classify"]
    cases = [
        (["--input", str(empty), "--output", str(tmp_path / "o1")], "no records"),
        (["--input", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "o2")], "missing.txt"),
        (["--input", str(table), "--text-column", "text", "--output", str(tmp_path / "o3")], "body"),
        (["--input", str(latin), "--output", str(tmp_path / "o4")], "line 2"),
        (["--input", str(corpus), "--output", str(taken)], "already holds"),
        (["--input", str(corpus), "--output", str(tmp_path / "o5"), "--shards", "0"], "--shards"),
    ]
    for extra, words in cases:
        result = bertq.run(*base, *extra)
        assert result.returncode == 2 and words in result.stderr, (extra, result.stderr)
        assert "Traceback" not in result.stderr
    assert bertq.json("jobs") == []
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))  # nothing half-written
    # --on-bad-line skip takes the undecodable line out and keeps the others' ids.
    result = bertq.run(
        *base, "--input", str(latin), "--output", str(tmp_path / "o6"), "--on-bad-line", "skip", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert bertq.json("show", str(json.loads(result.stdout)["id"]))["spec"]["on_bad_line"] == "skip"
    # A path through ".." (what the README's D=../shared/data gives) is fine, and stored normalised.
    detour = tmp_path / "taken" / ".." / "table.tsv"
    result = bertq.run(
        *base, "--input", str(detour), "--text-column", "body", "--output", str(tmp_path / "o7"), "--json"
    )
    assert result.returncode == 0, result.stderr
    assert bertq.json("show", str(json.loads(result.stdout)["id"]))["spec"]["inputs"] == [str(table)]


@pytest.mark.slow
def test_an_input_changed_after_submit_fails_the_job_loudly(bertq, tiny_classifier, tmp_path):
    corpus = tmp_path / "changing.txt"
    corpus.write_text("one good line\nanother line\n")
    job = _submit(
        bertq,
        "--model",
        str(tiny_classifier),
        "--task",
        "classify",
        "--input",
        str(corpus),
        "--output",
        str(tmp_path / "out"),
    )
    corpus.write_text("one good line\nanother line, edited\n")
    bertq.start_worker()
    assert bertq.run("wait", str(job), "--timeout", "120").returncode == 1
    view = bertq.json("show", str(job))
    assert view["status"] == "FAILED" and "changing.txt" in view["error"] and "changed" in view["error"]
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_out_of_memory_halves_the_batch_and_finishes_and_fails_clearly_at_one(tiny_classifier, monkeypatch):
    from bertq.worker.inference import OutOfMemory
    from bertq.worker.predict import load_predictor

    texts = [text for text, _ in make_examples(100, seed=9)]
    clean = load_predictor(str(tiny_classifier), "classify", device="cpu", precision="fp32").predict(texts)
    monkeypatch.setenv("BERTQ_FAULT_OOM_ABOVE_BATCH", "7")  # CUDA's out-of-memory error above 7 inputs
    squeezed = load_predictor(str(tiny_classifier), "classify", device="cpu", precision="fp32")
    assert squeezed.predict(texts) == clean  # smaller batches, same answers
    monkeypatch.setenv("BERTQ_FAULT_OOM_ABOVE_BATCH", "0")
    hopeless = load_predictor(str(tiny_classifier), "classify", device="cpu", precision="fp32")
    with pytest.raises(OutOfMemory, match="does not fit"):
        hopeless.predict(texts[:3])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_texts_scores_do_not_depend_on_the_texts_run_with_it(tiny_classifier, precision):
    """What makes a result-cache run (only the misses go through the model, batched together) write
    byte for byte what a full run writes: one length a batch, and never fewer than 8 rows a batch."""
    from bertq.worker.predict import load_predictor

    texts = [text for text, _ in make_examples(120, seed=4)]
    predictor = load_predictor(str(tiny_classifier), "embed", device="cpu", precision=precision, batch_invariant=True)
    everything = predictor.predict(texts)
    some = list(range(0, len(texts), 7))
    assert predictor.predict([texts[i] for i in some]) == [everything[i] for i in some]
    assert [predictor.predict([texts[i]])[0] for i in (3, 50)] == [everything[3], everything[50]]


def test_outside_bulk_inference_a_single_input_runs_alone(tiny_classifier):
    """Evaluation times batch-1 latency through `run_model`: no repeated rows, no padding beyond it."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from bertq.worker.inference import run_model

    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()
    shapes = []
    model.register_forward_pre_hook(
        lambda _m, _a, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    run_model(model, {"input_ids": [[2, 7, 9, 3]], "attention_mask": [[1, 1, 1, 1]]}, pad_id=0, device="cpu")
    features = {
        "input_ids": [[2] + [7] * n + [3] for n in (40, 35)],
        "attention_mask": [[1] * (n + 2) for n in (40, 35)],
    }
    run_model(model, features, pad_id=0, device="cpu")
    assert shapes == [(1, 4), (2, 42)] and torch.is_grad_enabled()


def test_each_schedule_slot_fires_once_even_with_two_beats(bertq_any_db, tiny_classifier, corpus, tmp_path):
    bertq = bertq_any_db
    from bertq.scheduler.schedules import fire_due

    out = tmp_path / "nightly-{date}"
    added = bertq.run(
        "schedule",
        "add",
        "nightly",
        "--cron",
        "0 2 * * *",
        "--timezone",
        "Europe/Paris",
        "--",
        "submit",
        "infer",
        "--model",
        str(tiny_classifier),
        "--task",
        "classify",
        "--input",
        str(corpus),
        "--output",
        str(out),
    )
    assert added.returncode == 0, added.stderr
    bad = bertq.run("schedule", "add", "broken", "--cron", "61 2 * * *", "--", "submit", "infer")
    assert bad.returncode == 2 and "does not parse" in bad.stderr

    from bertq.db.models import Schedule

    with bertq.sessions()() as session, session.begin():
        session.query(Schedule).update({"created_at": datetime(2026, 11, 1)})
    settings = bertq.settings()
    slot_passed = datetime(2026, 11, 20, 1, 30)  # 02:30 in Paris (UTC+1): the 02:00 slot is due
    results: list = []
    threads = [threading.Thread(target=lambda: results.extend(fire_due(settings, now=slot_passed))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 1 and results[0].error is None and results[0].job_id
    assert fire_due(settings, now=slot_passed) == []  # the slot is taken for good
    view = bertq.json("show", str(results[0].job_id))
    assert view["spec"]["output"].endswith("nightly-2026-11-20")
    listing = bertq.json("schedule", "list")
    assert listing[0]["name"] == "nightly" and listing[0]["last_job"] == results[0].job_id
    assert bertq.run("schedule", "remove", "nightly").returncode == 0
    assert bertq.json("schedule", "list") == []


def test_a_schedules_relative_paths_mean_the_folder_it_was_added_from(bertq, tiny_classifier, corpus, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "corpus.txt").write_text(corpus.read_text())
    added = bertq.run(
        "schedule",
        "add",
        "relative",
        "--cron",
        "0 2 * * *",
        "--",
        "submit",
        "infer",
        "--model",
        str(tiny_classifier),
        "--task",
        "classify",
        "--input",
        "corpus.txt",
        "--output",
        "labels-{date}",
        cwd=project,
    )
    assert added.returncode == 0, added.stderr
    assert bertq.json("schedule", "list")[0]["folder"] == str(project)
    fired = bertq.run("schedule", "run-now", "relative", cwd=tmp_path)  # beat runs from elsewhere
    assert fired.returncode == 0, fired.stderr
    spec = bertq.json("show", fired.stdout.split("job ")[-1].strip())["spec"]
    assert spec["inputs"] == [str(project / "corpus.txt")]
    assert spec["output"] == str(project / f"labels-{datetime.now(UTC).date().isoformat()}")
    # The folder gone, the fire fails and says why, and nothing is enqueued.
    jobs = bertq.json("jobs")
    shutil.rmtree(project)
    fired = bertq.run("schedule", "run-now", "relative")
    assert fired.returncode != 0 and "is gone" in fired.stderr and "add it again" in fired.stderr
    assert bertq.json("jobs") == jobs


@pytest.mark.parametrize("family", ["bert", "roberta", "electra"])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_serving_layers_give_the_models_own_outputs(family, attention):
    """Bulk inference swaps each encoder layer for a fused one (and, where the task reads only the
    first token, a last layer computing that row alone): every output a task reads must stay the
    model's own, on a padded batch, in every precision the CPU runs."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification

    from bertq.worker.inference import ServingLayer, autocast, prepare_model
    from bertq.worker.predict import serve_model

    config = AutoConfig.for_model(
        family,
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
        attn_implementation=attention,
        **({"embedding_size": 32} if family == "electra" else {}),
    )
    lengths = [17, 9, 3, 12]  # padded to 17: the mask matters
    torch.manual_seed(0)
    ids = torch.randint(5, 120, (4, 17))
    mask = (torch.arange(17)[None, :] < torch.tensor(lengths)[:, None]).long()
    real = mask[..., None].bool()
    cases = (
        (AutoModelForSequenceClassification, "classify", "mean", True, lambda out: out.logits),
        (AutoModelForTokenClassification, "ner", "mean", False, lambda out: out.logits.masked_select(real)),
        (AutoModel, "embed", "mean", False, lambda out: out.last_hidden_state.masked_select(real)),
        (AutoModel, "embed", "cls", True, lambda out: out.last_hidden_state[:, 0]),
    )
    # int8 quantises activations per product, so computing fewer rows changes its rounding a little
    for precision, tolerance in (("fp32", 1e-5), ("bf16", 0.05), ("fp16", 5e-3), ("int8", 5e-3)):
        for build, task, pooling, first_only, read in cases:
            torch.manual_seed(1)
            weights = build.from_config(config).state_dict()
            reference, served = build.from_config(config), build.from_config(config)
            reference.load_state_dict(weights)
            served.load_state_dict(weights)
            reference = prepare_model(reference, precision=precision, device="cpu")
            served = serve_model(served, task=task, precision=precision, device="cpu", pooling=pooling)
            layers = served.base_model.encoder.layer
            assert all(isinstance(layer, ServingLayer) for layer in layers)
            assert [layer.first_token_only for layer in layers] == [False, first_only]
            with torch.inference_mode(), autocast(precision, "cpu"):
                expected = read(reference(input_ids=ids, attention_mask=mask)).float()
                got = read(served(input_ids=ids, attention_mask=mask)).float()
            assert got.shape == expected.shape
            assert torch.allclose(expected, got, atol=tolerance), (
                precision,
                task,
                pooling,
                (expected - got).abs().max(),
            )


def test_models_of_other_layouts_are_served_as_they_are():
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from bertq.worker.inference import serve_encoder

    distil = AutoConfig.for_model("distilbert", vocab_size=120, dim=32, n_layers=2, n_heads=4, hidden_dim=64)
    model = AutoModelForSequenceClassification.from_config(distil).eval()
    assert serve_encoder(model, task="classify") == 0
    assert type(model.distilbert.transformer.layer[-1]).__name__ == "TransformerBlock"
    decoder = AutoConfig.for_model(
        "bert",
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        attn_implementation="sdpa",
        is_decoder=True,
    )
    assert serve_encoder(AutoModelForSequenceClassification.from_config(decoder).eval(), task="classify") == 0


def test_predictors_copy_results_to_the_host_once_a_batch_not_once_a_row(tiny_model, tmp_path, monkeypatch):
    """On a GPU each `.cpu()` is a synchronising device-to-host copy: the predictors make one (or
    two, QA's start and end) per batch, whatever the number of rows in it."""
    import torch
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    from bertq.worker.predict import load_predictor

    def saved(model, name):  # type: ignore[no-untyped-def]
        folder = tmp_path / name
        model.save_pretrained(folder)
        AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
        return str(folder)

    ner = saved(
        AutoModelForTokenClassification.from_pretrained(
            tiny_model, num_labels=3, id2label={0: "O", 1: "B-X", 2: "I-X"}
        ),
        "ner",
    )
    nli = saved(
        AutoModelForSequenceClassification.from_pretrained(
            tiny_model, num_labels=3, id2label={0: "entailment", 1: "neutral", 2: "contradiction"}
        ),
        "nli",
    )
    qa = saved(AutoModelForQuestionAnswering.from_pretrained(tiny_model), "qa")
    texts = [f"the movie number {i} was good" for i in range(24)]
    copies = {"count": 0}
    originals = {name: getattr(torch.Tensor, name) for name in ("cpu", "__float__", "item")}

    def counting(name: str):  # type: ignore[no-untyped-def]
        def call(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            copies["count"] += 1
            return originals[name](self, *args, **kwargs)

        return call

    # Every case fits one batch (token budget and batch cap above its rows): copies are per batch.
    cases = [
        (str(tiny_model), "embed", {}, 1),
        (ner, "ner", {}, 1),
        (nli, "zero-shot", {"labels": ["good", "bad"]}, 1),
        (qa, "qa", {"question": "what was good?"}, 2),
    ]
    for location, task, options, per_batch in cases:
        predictor = load_predictor(location, task, device="cpu", precision="fp32", max_length=32, **options)
        for name in originals:
            monkeypatch.setattr(torch.Tensor, name, counting(name))
        copies["count"] = 0
        results = predictor.predict(texts, token_budget=1 << 20)
        for name, method in originals.items():
            monkeypatch.setattr(torch.Tensor, name, method)
        assert len(results) == len(texts)
        assert copies["count"] <= per_batch, (task, copies["count"])


def test_parquet_output_has_each_tasks_schema_whatever_the_values():
    """The same columns and types in every shard's file: an empty shard, a shard without entities."""
    import pyarrow as pa

    from bertq.infer_tasks import INFER_TASKS
    from bertq.worker.jobs.infer import parquet_schema

    for task in INFER_TASKS:
        schema = parquet_schema(task, [])
        assert schema.field("id").type == pa.string() and len(schema) == 1 + len(INFER_TASKS[task].columns)
        pa.Table.from_pylist([], schema=schema)  # an empty shard still writes its schema
    entities = parquet_schema("ner", [{"entities": []}]).field("entities").type
    assert entities == pa.list_(pa.struct([("text", pa.string()), ("label", pa.string()), ("start", pa.int32()),
                                           ("end", pa.int32()), ("score", pa.float64())]))  # fmt: skip
    assert parquet_schema("classify", [{"label": "a", "score": 0.9}]).names == ["id", "label", "score"]
    with_scores = parquet_schema("classify", [{"label": "a", "score": 0.9, "scores": {"a": 0.9, "b": 0.1}}])
    assert with_scores.field("scores").type == pa.map_(pa.string(), pa.float64())
    qa = parquet_schema("qa", [])
    assert [qa.field(n).type for n in ("start", "end", "score")] == [pa.int32(), pa.int32(), pa.float64()]


_COUNTING_READS = """
import atexit, sys
def bytes_read():
    with open("/proc/self/io") as io:
        fields = dict(line.split(": ") for line in io.read().splitlines())
    print(f"rchar={fields['rchar']}", file=sys.stderr)
atexit.register(bytes_read)
sys.argv = ["bertq", *sys.argv[1:]]
from bertq.cli.main import main
main()
"""


def test_submit_does_not_read_the_corpus(bertq, tiny_classifier, tmp_path):
    """Planning is the bulk job's first step, on a worker: the submitting host (beat, for schedules)
    reads no more than the corpus's first lines, whatever its size. Linux counts the bytes the submit
    process read (rchar, imports included); the corpus is 400 MB, almost all of it a sparse hole."""
    import subprocess
    import sys

    corpus = tmp_path / "huge.txt"
    with open(corpus, "wb") as handle:
        handle.write(b"".join(f"line {i} of a corpus too big to read at submit\n".encode() for i in range(20000)))
        handle.truncate(400 * 2**20)  # the rest reads as NUL bytes: a line a reader would refuse
    result = subprocess.run(
        [sys.executable, "-c", _COUNTING_READS, "submit", "infer", "--model", str(tiny_classifier), "--task",
         "classify", "--input", str(corpus), "--output", str(tmp_path / "out"), "--json"],
        env=bertq.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    read = int(result.stderr.rsplit("rchar=", 1)[1].split()[0])
    assert read < 100 * 2**20, f"the submit read {read / 2**20:.0f} MB"
    job = bertq.json("show", str(json.loads(result.stdout)["id"]))
    [plan] = job["children"]  # planning is a job of its own, queued for a worker; no shards yet
    assert plan["kind"] == "infer_plan" and plan["status"] == "QUEUED"
