"""The headline command as written, and Hub models and datasets through the Hugging Face cache.

This machine cannot reach the Hub. The tests fill a local Hugging Face cache (`tests/hfcache.py`)
the way an online run leaves it, with tiny models under the real names `roberta-base` and
`distilbert-base-uncased` and slices of the real SST-2, CoNLL-2003 and SQuAD from ../shared/data,
and run bertq with HF_HUB_OFFLINE=1: the same code path a user's second (or offline) run takes.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from hfcache import cache_dataset, cache_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _sst2(name: str, count: int) -> list[dict]:
    with open(SHARED / "sst2" / name, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [{"sentence": r["sentence"], "label": int(r["label"]), "idx": i} for i, r in enumerate(rows[:count])]


@pytest.fixture(scope="session")
def hf_home(tmp_path_factory: pytest.TempPathFactory, arch_models: dict[str, Path]) -> Path:
    """A Hugging Face cache holding what the tutorial loads by name, in tiny or sliced form: the tiny
    RoBERTa (byte-level BPE) and DistilBERT (WordPiece) of tests/archs.py under their real names."""
    from datasets import ClassLabel, Features, Sequence, Value

    root = tmp_path_factory.mktemp("hf-home")
    built = tmp_path_factory.mktemp("built")
    cache_model(root, "roberta-base", arch_models["roberta"])
    distilbert = arch_models["distilbert"]
    cache_model(root, "distilbert-base-uncased", distilbert)

    # A fine-tuned Hub classifier that names its classes, as distilbert-base-uncased-finetuned-sst-2-english does.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    named = built / "named"
    AutoModelForSequenceClassification.from_pretrained(
        distilbert, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1}
    ).save_pretrained(named)
    AutoTokenizer.from_pretrained(distilbert).save_pretrained(named)
    cache_model(root, "distilbert-base-uncased-finetuned-sst-2-english", named)
    # A Hub repository with pickle weights only.
    pickled = built / "pickled"
    shutil.copytree(distilbert, pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"not really a pickle")
    cache_model(root, "someone/pickled-bert", pickled)

    sst2 = Features(sentence=Value("string"), label=ClassLabel(names=["negative", "positive"]), idx=Value("int32"))
    cache_dataset(
        root,
        "nyu-mll/glue",
        "sst2",
        {"train": _sst2("train_sentences.tsv", 64), "validation": _sst2("dev.tsv", 32)},
        sst2,
    )
    tags = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    conll = Features(id=Value("string"), tokens=Sequence(Value("string")), ner_tags=Sequence(ClassLabel(names=tags)))
    cache_dataset(root, "eriktks/conll2003", None, {"train": _conll(tags, 24), "validation": _conll(tags, 12)}, conll)
    squad = Features(
        id=Value("string"),
        title=Value("string"),
        context=Value("string"),
        question=Value("string"),
        answers=Sequence({"text": Value("string"), "answer_start": Value("int32")}),
    )
    rows = _squad(24)
    cache_dataset(root, "rajpurkar/squad", None, {"train": rows[:16], "validation": rows[16:]}, squad)
    return root


def _conll(tags: list[str], count: int) -> list[dict]:
    sentences: list[dict] = []
    tokens: list[str] = []
    labels: list[int] = []
    for line in (SHARED / "conll2003" / "train.txt").open(encoding="utf-8"):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if tokens:
                sentences.append({"id": str(len(sentences)), "tokens": tokens, "ner_tags": labels})
                tokens, labels = [], []
                if len(sentences) == count:
                    break
            continue
        tokens.append(parts[0])
        labels.append(tags.index(parts[-1]))
    return sentences


def _squad(count: int) -> list[dict]:
    data = json.loads((SHARED / "squad" / "dev-v1.1.json").read_text())["data"]
    rows = []
    for article in data:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                rows.append(
                    {
                        "id": qa["id"],
                        "title": article["title"],
                        "context": paragraph["context"],
                        "question": qa["question"],
                        "answers": {
                            "text": [a["text"] for a in qa["answers"]],
                            "answer_start": [a["answer_start"] for a in qa["answers"]],
                        },
                    }
                )
                if len(rows) == count:
                    return rows
    return rows


@pytest.fixture
def hub_bertq(bertq, hf_home):
    bertq.env["HF_HOME"] = str(hf_home)
    return bertq


def _queued(bertq) -> list:
    return bertq.json("jobs")


def test_the_headline_command_runs_as_written(hub_bertq):
    """`bertq submit distill --teacher roberta --student distilbert`: no task, no data, nothing else."""
    hub_bertq.start_worker()
    result = hub_bertq.run(
        "submit", "distill", "--teacher", "roberta", "--student", "distilbert", "--wait", timeout=900
    )
    assert result.returncode == 0, result.stdout + result.stderr
    parent = int(result.stdout.split("job ", 1)[1].split()[0])
    view = hub_bertq.json("show", str(parent))
    assert view["status"] == "SUCCEEDED", view
    summary = view["summary"]
    assert {"teacher_job", "student_job", "retention", "speedup", "size_ratio"} <= set(summary)
    teacher = hub_bertq.json("show", str(summary["teacher_job"]))
    spec = teacher["spec"]
    # The preset's data (SST-2 from the Hub), the teacher's own recipe (RoBERTa: 2e-5), ClassLabel names.
    assert spec["train"] == "hub:nyu-mll/glue#sst2:train" and spec["eval"] == "hub:nyu-mll/glue#sst2:validation"
    assert spec["model_location"] == "roberta-base" and spec["lr"] == pytest.approx(2e-5)
    assert spec["labels"] == ["0", "1"] and spec["label_names"] == ["negative", "positive"]
    student = hub_bertq.json("show", str(summary["student_job"]))
    assert student["spec"]["student_location"] == "distilbert-base-uncased"


def test_hub_data_for_ner_and_qa_is_read_by_the_worker_as_checked(hf_home, tiny_model, tmp_path, monkeypatch):
    """conll2003 and squad with no --train: the Hub datasets, ClassLabel tags become tag names."""
    from bertq.specs import build_finetune_spec
    from bertq.worker.context import LocalContext, call_local

    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)  # read once, when datasets was imported
    monkeypatch.setenv("BERTQ_HOME", str(tmp_path / "home"))
    ner = build_finetune_spec(
        model=str(tiny_model), task="conll2003", train=None, eval=None, max_steps=2, max_length=32
    )
    assert ner.train == "hub:eriktks/conll2003:train" and "B-PER" in (ner.labels or [])
    qa = build_finetune_spec(
        model=str(tiny_model), task="squad", train=None, eval=None, max_steps=2, max_length=64, stride=16
    )
    assert qa.eval == "hub:rajpurkar/squad:validation"
    for spec in (ner, qa):
        context = LocalContext(workdir=tmp_path / spec.family, job_id=1)
        call_local("finetune", spec.to_dict(), context)
        metrics = context.latest_metrics()
        assert any(key.startswith("eval_") for key in metrics), metrics


@pytest.mark.parametrize(
    ("train", "words"),
    [
        ("hub:nobody/no-such-dataset", "not in the local Hugging Face cache"),
        ("hub:nyu-mll/glue#cola:train", "config cola"),
        ("hub:nyu-mll/glue#sst2:test", "Unknown split"),
        ("hub:nyu-mll/glue#sst2:train[:5000]", "has 64 rows"),
        ("hub:rajpurkar/squad:train", "no column"),
        ("hub:../etc", "is not a Hub dataset"),
    ],
)
def test_bad_hub_data_is_refused_at_submit_with_nothing_enqueued(hub_bertq, train, words):
    result = hub_bertq.run(
        "submit", "finetune", "--model", "distilbert", "--task", "sst2", "--train", train, "--eval", train
    )
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert _queued(hub_bertq) == []


def test_named_labels_are_matched_or_refused_with_both_lists(hub_bertq):
    """NEGATIVE/POSITIVE ↔ SST-2's 0/1 (ClassLabel names negative/positive); other names need --label-map."""
    named = "distilbert-base-uncased-finetuned-sst-2-english"
    result = hub_bertq.run("submit", "distill", "--teacher", named, "--student", "distilbert", "--json")
    assert result.returncode == 0, result.stderr
    parent = json.loads(result.stdout)["id"]
    steps = hub_bertq.json("show", str(parent))["children"]
    student = next(s for s in steps if s["kind"] == "student")
    assert hub_bertq.json("show", str(student["id"]))["spec"]["labels"] == ["0", "1"]
    assert not any(s["kind"] == "finetune" for s in steps)  # a fine-tuned teacher is used as it is

    # The data's ClassLabel names are the only link: with a local file labelled 0/1 and no names, refused.
    plain = hub_bertq.home / "plain.tsv"
    plain.write_text("sentence\tlabel\n" + "".join(f"text number {i}\t{i % 2}\n" for i in range(8)))
    base = ["submit", "distill", "--teacher", named, "--student", "distilbert", "--task", "classification"]
    base += ["--train", str(plain), "--eval", str(plain)]
    result = hub_bertq.run(*base)
    assert result.returncode == 2
    assert "['NEGATIVE', 'POSITIVE']" in result.stderr and "['0', '1']" in result.stderr
    assert "--label-map NEGATIVE=0,POSITIVE=1" in result.stderr
    assert hub_bertq.run(*base, "--label-map", "NEGATIVE=0,POSITIVE=1").returncode == 0
    result = hub_bertq.run(*base, "--label-map", "NEGATIVE=0")
    assert result.returncode == 2 and "does not name POSITIVE" in result.stderr


def test_bulk_inference_reads_a_hub_dataset(hub_bertq, tmp_path):
    hub_bertq.start_worker()
    output = tmp_path / "out"
    result = hub_bertq.run(
        "submit",
        "infer",
        "--model",
        "distilbert-base-uncased-finetuned-sst-2-english",
        "--task",
        "classify",
        "--input",
        "hub:nyu-mll/glue#sst2:validation[:20]",
        "--output",
        str(output),
        "--wait",
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [json.loads(line) for path in sorted(output.glob("*.jsonl")) for line in path.read_text().splitlines()]
    assert len(rows) == 20 and {row["label"] for row in rows} <= {"NEGATIVE", "POSITIVE"}


def test_transfer_data_from_the_hub_is_checked_and_stored_canonically(hub_bertq):
    result = hub_bertq.run(
        "submit", "distill", "--teacher", "roberta", "--student", "distilbert",
        "--transfer-data", "hub:nyu-mll/glue#sst2:validation", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    parent = json.loads(result.stdout)["id"]
    outputs = next(c for c in hub_bertq.json("show", str(parent))["children"] if c["kind"] == "teacher_outputs")
    spec = hub_bertq.json("show", str(outputs["id"]))["spec"]
    assert spec["transfer_data"] == "hub:nyu-mll/glue#sst2:validation" and spec["transfer_column"] == "sentence"


def test_a_pickle_only_hub_repository_is_refused_at_submit(hub_bertq):
    result = hub_bertq.run("submit", "finetune", "--model", "someone/pickled-bert")
    assert result.returncode == 2 and "pytorch_model.bin" in result.stderr and "--allow-pickle" in result.stderr
    assert _queued(hub_bertq) == []


def test_a_model_neither_online_nor_cached_fails_fast_with_the_fix(hub_bertq):
    result = hub_bertq.run("submit", "distill", "--teacher", "albert", "--student", "distilbert")
    assert result.returncode == 2
    assert "albert-base-v2" in result.stderr and "not in the local cache" in result.stderr
    assert result.stderr.count("not in the local cache") == 1  # said once, not once per step


def test_an_unreachable_hub_falls_back_to_the_cache_at_once(hub_bertq):
    """No HF_HUB_OFFLINE, and the Hub does not answer (a closed port as its endpoint): submit asks it
    once with a short timeout, then reads the cache, instead of retrying for half a minute."""
    import time

    hub_bertq.env.pop("HF_HUB_OFFLINE", None)
    hub_bertq.env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    started = time.monotonic()
    result = hub_bertq.run("submit", "distill", "--teacher", "roberta", "--student", "distilbert", "--json")
    assert result.returncode == 0, result.stderr
    result = hub_bertq.run("submit", "finetune", "--model", "distilbert", "--train", "hub:nobody/none", "--eval", "x")
    assert result.returncode == 2 and "the Hugging Face Hub is unreachable" in result.stderr
    assert time.monotonic() - started < 60


def test_typos_get_a_did_you_mean(hub_bertq):
    result = hub_bertq.run("submit", "finetune", "--model", "minlm")
    assert result.returncode == 2 and "did you mean 'minilm'?" in result.stderr
    result = hub_bertq.run("submit", "finetune", "--model", "minilm", "--task", "sts2")
    assert result.returncode == 2 and "did you mean 'sst2'?" in result.stderr
