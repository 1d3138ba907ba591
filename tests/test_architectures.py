"""Every architecture through every job kind, in-process (`call_local`), on tiny random models.

The models and tokenizers come from tests/archs.py (built once per run). Each architecture is
fine-tuned once per family (classification, NER, QA) and its checkpoints are reused by the
evaluate, infer and distill cells. Scores are not checked (the models are random and train for a few
steps): a cell passes when the job runs and reports what a worker would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from archs import ARCHS, SHARED_DATA

from bertq.plan import PlannedJob
from bertq.worker.context import LocalContext, ShardRecord, call_local

ARCH_NAMES = list(ARCHS)
MAX_LENGTH = 48
TASKS = {"classification": "sst2", "ner": "ner", "qa": "qa"}
"""family -> the --task preset its fine-tune is submitted with."""


# --------------------------------------------------------------------------------------------
# Data: a few rows of the real datasets, written once.


@pytest.fixture(scope="session")
def arch_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """family -> (train file, eval file)."""
    folder = tmp_path_factory.mktemp("arch-data")
    sst2 = (SHARED_DATA / "sst2" / "train_sentences.tsv").read_text(encoding="utf-8").splitlines()
    (folder / "sst2-train.tsv").write_text("\n".join(sst2[:65]) + "\n", encoding="utf-8")
    (folder / "sst2-eval.tsv").write_text("\n".join([sst2[0], *sst2[100:132]]) + "\n", encoding="utf-8")

    sentences = (SHARED_DATA / "conll2003" / "train.txt").read_text(encoding="utf-8").split("\n\n")
    sentences = [s for s in sentences if "DOCSTART" not in s and s.strip()]
    (folder / "ner-train.txt").write_text("\n\n".join(sentences[:40]) + "\n", encoding="utf-8")
    (folder / "ner-eval.txt").write_text("\n\n".join(sentences[40:56]) + "\n", encoding="utf-8")

    squad = json.loads((SHARED_DATA / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))

    def questions(article: dict, count: int) -> dict:
        paragraphs, left = [], count
        for paragraph in article["paragraphs"]:
            if left <= 0:
                break
            paragraphs.append({"context": paragraph["context"], "qas": paragraph["qas"][:left]})
            left -= len(paragraphs[-1]["qas"])
        return {"title": article["title"], "paragraphs": paragraphs}

    for name, article, count in (("qa-train.json", squad["data"][0], 32), ("qa-eval.json", squad["data"][1], 12)):
        (folder / name).write_text(json.dumps({"version": "1.1", "data": [questions(article, count)]}))
    return {
        "classification": (folder / "sst2-train.tsv", folder / "sst2-eval.tsv"),
        "ner": (folder / "ner-train.txt", folder / "ner-eval.txt"),
        "qa": (folder / "qa-train.json", folder / "qa-eval.json"),
    }


def _context(folder: Path, job_id: int = 1, **shared: Any) -> LocalContext:
    return LocalContext(workdir=folder, job_id=job_id, **shared)


@pytest.fixture(scope="session")
def finetuned(arch_models, arch_data, tmp_path_factory):  # type: ignore[no-untyped-def]
    """`finetuned(arch, family)`: the checkpoint folder of that fine-tune, run once and then reused."""
    from bertq.specs import build_finetune_spec

    done: dict[tuple[str, str], Path] = {}

    def get(arch: str, family: str) -> Path:
        if (arch, family) not in done:
            train, evaluation = arch_data[family]
            spec = build_finetune_spec(
                model=str(arch_models[arch]),
                task=TASKS[family],
                train=str(train),
                eval=str(evaluation),
                epochs=1,
                batch_size=16,
                lr=1e-3,
                max_length=64 if family == "qa" else MAX_LENGTH,
                stride=16,
            )
            ctx = _context(tmp_path_factory.mktemp(f"finetune-{arch}-{family}"))
            result = call_local("finetune", spec.to_dict(), ctx)
            [checkpoint] = [path for kind, path in ctx.reported_artifacts if kind == "checkpoint"]
            assert Path(checkpoint, "model.safetensors").is_file() and result["checkpoint"] == str(checkpoint)
            done[(arch, family)] = Path(checkpoint)
        return done[(arch, family)]

    return get


# --------------------------------------------------------------------------------------------
# Fine-tune and evaluate


@pytest.mark.parametrize("family", list(TASKS))
@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_finetune(arch, family, finetuned):
    from transformers import AutoConfig

    checkpoint = finetuned(arch, family)
    config = AutoConfig.from_pretrained(checkpoint)
    assert config.model_type == ARCHS[arch].model_type
    assert config.architectures[0].endswith(
        {"classification": "SequenceClassification", "ner": "TokenClassification", "qa": "QuestionAnswering"}[family]
    )


EVALUATIONS = [("classification", p) for p in ("fp32", "bf16", "int8")] + [("ner", p) for p in ("fp32", "bf16", "int8")]
EVALUATIONS += [("qa", p) for p in ("fp32", "bf16", "int8")]


def _evaluate_spec(arch, family, precision, finetuned, arch_data):  # type: ignore[no-untyped-def]
    from bertq.specs import build_evaluate_spec

    return build_evaluate_spec(
        model=str(finetuned(arch, family)),
        task=TASKS[family],
        data=str(arch_data[family][1]),
        precision=precision,
        latency_samples=3,
        max_length=64 if family == "qa" else MAX_LENGTH,
    )


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_evaluate_job(arch, finetuned, arch_data, tmp_path):
    """The whole job, its measuring process included (a fresh Python process: about 5 s each, so once
    per architecture; the precisions are measured in-process below)."""
    spec = _evaluate_spec(arch, "classification", "int8", finetuned, arch_data)
    ctx = _context(tmp_path)
    result = call_local("evaluate", spec.to_dict(), ctx)
    assert result["precision"] == "int8" and result["examples"] > 0
    assert {"accuracy", "throughput_per_s", "size_mb", "latency_p50_ms"} <= set(ctx.latest_metrics())


@pytest.mark.parametrize("family,precision", EVALUATIONS)
@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_evaluate(arch, family, precision, finetuned, arch_data):
    """What the evaluate job's measuring process computes (`measure_model`), run in this process."""
    from bertq.families import FAMILIES
    from bertq.worker.jobs.evaluate import measure_model

    measured = measure_model(_evaluate_spec(arch, family, precision, finetuned, arch_data))
    assert measured["result"]["precision"] == precision
    assert FAMILIES[family].main_metric in measured["metrics"] and measured["metrics"]["throughput_per_s"] > 0


# --------------------------------------------------------------------------------------------
# Bulk inference: the planned shard jobs, then the finishing job, as a worker would run them.


def run_plan(plan: list[PlannedJob], folder: Path) -> dict[int, LocalContext]:
    """Run a plan's jobs in-process in dependency order (steps first, index 0 last), with the shard
    jobs a planning step adds run after it; returns each job's context by plan index (added steps
    after the plan's own). Artifacts and metrics are shared as the database would share them."""
    from bertq.bulk import InferSpec, shard_jobs
    from bertq.worker.runner import size_and_digest

    ids = [1000 + index for index in range(len(plan))]
    jobs = list(plan)
    artifacts: dict[tuple[int, str], str] = {}
    metrics: dict[int, dict[str, float]] = {}
    contexts: dict[int, LocalContext] = {}
    shard_rows: list[ShardRecord] = []
    order = [*range(1, len(plan)), 0]
    while order:
        index = order.pop(0)
        job = jobs[index]
        values = job.spec(ids) if callable(job.spec) else job.spec
        ctx = _context(
            folder / f"{index}-{job.kind}",
            ids[index],
            artifacts_of=artifacts,
            metrics_of_jobs=metrics,
            shard_rows=list(shard_rows),
        )
        call_local(job.kind, values, ctx)
        metrics[ids[index]] = ctx.latest_metrics()
        contexts[index] = ctx
        if job.kind == "infer_plan":  # the shard jobs it planned run next, before the finishing job
            steps = shard_jobs(InferSpec.from_dict(values), ctx.planned_shards, parent=ids[0], queue="cpu", priority=5)
            order[:0] = range(len(jobs), len(jobs) + len(steps))
            ids += [1000 + index for index in range(len(jobs), len(jobs) + len(steps))]
            jobs += steps
        if job.kind == "infer_shard":
            shard = values["shard"]
            [(_, output)] = [a for a in ctx.reported_artifacts if a[0] == "shard_output"]
            shard_rows.append(
                ShardRecord(
                    shard["index"],
                    shard["path"],
                    shard["start"],
                    shard["end"],
                    shard["first_line"],
                    shard["records"],
                    str(output),
                    size_and_digest(output)[1],
                )
            )
    return contexts


@pytest.fixture(scope="session")
def texts_file(tmp_path_factory) -> Path:
    lines = (SHARED_DATA / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:25]
    path = tmp_path_factory.mktemp("infer-input") / "texts.txt"
    long_line = " ".join(["the film is a long and winding story about nothing much"] * 30)  # past any max_length
    path.write_text("\n".join([*(line.split("\t")[0] for line in lines), long_line]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def nli_classifier(arch_models, tmp_path_factory):  # type: ignore[no-untyped-def]
    """`nli_classifier(arch)`: the bare model with an (untrained) entailment/neutral/contradiction head."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    def make(arch: str) -> Path:
        folder = tmp_path_factory.mktemp(f"nli-{arch}")
        labels = ["entailment", "neutral", "contradiction"]
        AutoModelForSequenceClassification.from_pretrained(
            arch_models[arch],
            num_labels=3,
            id2label=dict(enumerate(labels)),
            label2id={n: i for i, n in enumerate(labels)},
        ).save_pretrained(folder)
        AutoTokenizer.from_pretrained(arch_models[arch]).save_pretrained(folder)
        return folder

    return make


INFER_TASKS = {
    "classify": ("classification", {}),
    "ner": ("ner", {}),
    "embed": ("classification", {"normalize": True}),
    "zero-shot": (None, {"labels": "positive,negative,neutral"}),
    "qa": ("qa", {"question": "What is the film about?"}),
}
"""--task -> (the family of the fine-tuned checkpoint it runs; None: the NLI classifier), options."""


def run_infer(
    model: Path, task: str, texts: Path, output: Path, *, precision: str = "fp32", **options: Any
) -> list[dict]:
    from bertq.bulk import build_infer_spec, plan_infer

    spec = build_infer_spec(
        model=str(model),
        model_job=None,
        task=task,
        inputs=[str(texts)],
        output=str(output),
        shards="2",
        precision=precision,
        **options,
    )
    run_plan(plan_infer(spec, queue="cpu", priority=5), output.parent / f"jobs-{output.name}")
    manifest = json.loads((output / "manifest.json").read_text())
    rows = []
    for entry in manifest["files"]:
        rows += [json.loads(line) for line in (output / entry["path"]).read_text().splitlines()]
    return rows


@pytest.mark.parametrize("task", list(INFER_TASKS))
@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_infer(arch, task, finetuned, nli_classifier, texts_file, tmp_path):
    family, options = INFER_TASKS[task]
    model = finetuned(arch, family) if family else nli_classifier(arch)
    rows = run_infer(model, task, texts_file, tmp_path / "out", **options)
    assert len(rows) == len(texts_file.read_text().splitlines())
    key = {"classify": "label", "ner": "entities", "embed": "embedding", "zero-shot": "labels", "qa": "answer"}[task]
    assert all(key in row for row in rows)
    if task == "embed":
        assert len(rows[0]["embedding"]) == 32


# --------------------------------------------------------------------------------------------
# Distillation: every planned step, in order, across families with different tokenizers, and
# students cut from their teacher.


def distill(
    teacher: Path, student: str, data, folder: Path, task: str = "sst2", **options: Any
) -> dict[int, LocalContext]:  # type: ignore[no-untyped-def]
    from bertq.distillation import build_distill_spec, plan_distill

    train, evaluation = data["ner" if task == "ner" else "classification"]
    spec, teacher_finetune = build_distill_spec(
        teacher=str(teacher),
        teacher_job=None,
        task=task,
        train=str(train),
        eval=str(evaluation),
        student=student,
        epochs=1,
        batch_size=16,
        max_length=MAX_LENGTH,
        **options,
    )
    assert teacher_finetune is None  # a fine-tuned teacher folder is used as it is
    plan = plan_distill(spec, teacher_finetune, queue="cpu", priority=5, device="cpu")
    assert [job.kind for job in plan] == ["distill", "teacher_outputs", "student", "evaluate", "evaluate"]
    return run_plan(plan, folder)


@pytest.mark.parametrize("teacher,student", [("roberta", "distilbert"), ("albert", "bert")])
def test_distill_across_families(teacher, student, finetuned, arch_models, arch_data, tmp_path):
    contexts = distill(
        finetuned(teacher, "classification"), str(arch_models[student]), arch_data, tmp_path, student_layers=None
    )
    from transformers import AutoConfig

    [(_, checkpoint)] = [a for a in contexts[2].reported_artifacts if a[0] == "checkpoint"]
    assert AutoConfig.from_pretrained(checkpoint).model_type == ARCHS[student].model_type
    assert {"retention", "speedup", "size_ratio"} <= set(contexts[0].latest_metrics())


def test_ner_distils_per_word_across_tokenizers(finetuned, arch_models, arch_data, tmp_path):
    """A RoBERTa (byte-level BPE) tagger teaches a BERT (WordPiece) student: each word's soft label is
    the teacher's logits at its own first piece, given to the student at the student's first piece."""
    import numpy as np
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from bertq.conll import read_ner
    from bertq.worker.families import worker_family

    teacher = finetuned("roberta", "ner")
    contexts = distill(teacher, str(arch_models["bert"]), arch_data, tmp_path, task="ner", student_layers=None)
    assert {"speedup", "size_ratio"} <= set(contexts[0].latest_metrics())  # retention too when the teacher scores
    assert "eval_entity_f1" in contexts[2].latest_metrics()
    [(_, stored)] = [a for a in contexts[1].reported_artifacts if a[0] == "teacher_logits"]
    with np.load(stored) as arrays:
        soft = dict(zip(arrays["ids"].tolist(), np.split(arrays["logits"], np.cumsum(arrays["units"])[:-1])))
    family = worker_family("ner")
    sentence = next(s for s in read_ner(arch_data["ner"][0]) if 4 <= len(s.tokens) <= 8)  # not truncated
    words = soft[family.example_id(sentence)]
    assert len(words) == len(sentence.tokens) and np.isfinite(words).all()  # one vector a word
    tokenizer = AutoTokenizer.from_pretrained(teacher, add_prefix_space=True)
    encoded = tokenizer([sentence.tokens], is_split_into_words=True, return_tensors="pt")
    logits = AutoModelForTokenClassification.from_pretrained(teacher).eval()(**encoded).logits[0].detach().numpy()
    first = [encoded.word_ids(0).index(w) for w in range(len(sentence.tokens))]
    assert np.allclose(words, logits[first], atol=1e-4)
    # The student's column: those word vectors at the student's first pieces, NaN at every other token.
    student_tokenizer = AutoTokenizer.from_pretrained(arch_models["bert"])
    column = family.soft_label_column([sentence], student_tokenizer, _Spec(), soft)
    rows = np.array(column[0])
    student_ids = student_tokenizer([sentence.tokens], is_split_into_words=True).word_ids(0)
    firsts = [student_ids.index(w) for w in range(len(sentence.tokens))]
    assert np.allclose(rows[firsts], words) and np.isnan(np.delete(rows, firsts, axis=0)).all()


class _Spec:
    max_length = MAX_LENGTH


def test_layer_losses_teach_a_narrower_student_through_a_projection(
    finetuned, arch_models, arch_data, tmp_path, caplog
):
    """Hidden-state and attention losses with a student of the teacher's vocabulary but another width
    (a learned projection) and depth (the default map, last layer to last); a student with another
    vocabulary is refused, since the losses compare token by token."""
    import logging

    from transformers import AutoTokenizer, BertConfig, BertModel

    from bertq.worker.kd import default_layer_map

    caplog.set_level(logging.INFO)
    teacher = finetuned("bert", "classification")
    narrow = tmp_path / "narrow"
    config = BertConfig.from_pretrained(teacher)
    BertModel(BertConfig(vocab_size=config.vocab_size, hidden_size=24, num_hidden_layers=1, num_attention_heads=3,
                         intermediate_size=48, max_position_embeddings=config.max_position_embeddings)).save_pretrained(narrow)  # fmt: skip
    AutoTokenizer.from_pretrained(teacher).save_pretrained(narrow)
    contexts = distill(teacher, str(narrow), arch_data, tmp_path / "run", student_layers=None,
                       hidden_weight=1.0, attention_weight=1.0)  # fmt: skip
    assert default_layer_map(1, config.num_hidden_layers) == [config.num_hidden_layers - 1]
    assert "eval_accuracy" in contexts[2].latest_metrics()
    assert "projected 24 -> 32" in caplog.text

    with pytest.raises(Exception, match="need one tokenizer"):
        distill(teacher, str(arch_models["roberta"]), arch_data, tmp_path / "other", student_layers=None,
                hidden_weight=1.0)  # fmt: skip


def test_layer_losses_are_zero_for_a_copy_and_grow_with_the_difference():
    from types import SimpleNamespace

    import torch

    from bertq.worker.kd import layer_losses

    torch.manual_seed(0)
    hidden = [torch.randn(2, 5, 8) for _ in range(3)]
    attention = [torch.softmax(torch.randn(2, 4, 5, 5), dim=-1) for _ in range(2)]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    logits = torch.zeros(2, 2)
    teacher = SimpleNamespace(hidden_states=hidden, attentions=attention, logits=logits)
    same = layer_losses(teacher, teacher, mask, [0, 1], hidden_weight=1.0, attention_weight=1.0)
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    other = SimpleNamespace(
        hidden_states=[h.flip(-1) for h in hidden], attentions=[a.flip(-1) for a in attention], logits=logits
    )
    hidden_only = layer_losses(other, teacher, mask, [0, 1], hidden_weight=1.0)
    both = layer_losses(other, teacher, mask, [0, 1], hidden_weight=1.0, attention_weight=1.0)
    assert 0 < float(hidden_only) < float(both)
    # Padding makes no difference: only real tokens count.
    padded = [h.clone() for h in other.hidden_states]
    padded[1][0, 3:] = 100.0
    moved = SimpleNamespace(hidden_states=padded, attentions=other.attentions, logits=logits)
    assert float(layer_losses(moved, teacher, mask, [0, 1], hidden_weight=1.0)) == pytest.approx(float(hidden_only))


@pytest.mark.parametrize("arch", ["distilbert", "albert", "roberta"])
def test_student_cut_from_teacher(arch, finetuned, arch_data, tmp_path):
    """DistilBERT's `transformer.layer`, RoBERTa's `encoder.layer`, and ALBERT's shared layer applied
    once instead of twice (before the fix, ALBERT passed the submit and failed in the worker)."""
    from transformers import AutoConfig

    contexts = distill(finetuned(arch, "classification"), "teacher", arch_data, tmp_path, student_layers="1")
    [(_, checkpoint)] = [a for a in contexts[2].reported_artifacts if a[0] == "checkpoint"]
    config = AutoConfig.from_pretrained(checkpoint)
    assert config.num_hidden_layers == 1  # DistilBERT's n_layers, by its config's attribute map


# --------------------------------------------------------------------------------------------
# The pitfalls of other architectures, one test each.


def test_roberta_reads_pre_split_words_with_a_prefix_space(arch_models):
    """Byte-level BPE marks a word start with Ġ; given pre-split words without add_prefix_space every
    word after the first would be encoded as if it continued the one before."""
    from bertq.conll import NerExample
    from bertq.worker.loading import load_tokenizer
    from bertq.worker.ner import tokenize_and_align

    tokenizer = load_tokenizer(str(arch_models["roberta"]), family="ner")
    example = NerExample(tokens=["EU", "rejects", "German", "call"], tags=["B-ORG", "O", "B-MISC", "O"], line=1)
    features = tokenize_and_align([example], tokenizer, {"O": 0, "B-ORG": 1, "B-MISC": 2}, max_length=32)
    pieces = tokenizer.convert_ids_to_tokens(features["input_ids"][0])
    word_starts = [p for p, label in zip(pieces, features["labels"][0]) if label != -100]
    assert len(word_starts) == 4 and all(p.startswith("Ġ") for p in word_starts), pieces


@pytest.mark.parametrize("arch", ["distilbert", "deberta-v2", "roberta"])
def test_segment_ids_reach_only_models_with_segment_embeddings(arch, finetuned):
    """A tokenizer may return token_type_ids (a text pair's 1s) for a model that has no segment
    embeddings (DistilBERT, DeBERTa-v2 with type_vocab_size 0) or only one (RoBERTa): they are not
    passed to the model."""
    import torch

    from bertq.worker.inference import run_model
    from bertq.worker.loading import load_trained

    model = load_trained(str(finetuned(arch, "classification")), "classification").eval()
    seen: list[set[str]] = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(set(kwargs)), with_kwargs=True)
    features = {"input_ids": [[5, 6, 7, 8, 9, 10]], "token_type_ids": [[0, 0, 0, 1, 1, 1]]}
    [output] = run_model(model, features, pad_id=0, device="cpu")
    assert output["logits"].shape == (2,) and seen == [{"input_ids", "attention_mask"}]
    assert torch.isfinite(torch.tensor(output["logits"])).all()


def test_roberta_input_longer_than_its_positions_is_cut_to_512_minus_offset(finetuned, texts_file):
    """RoBERTa's position table has two reserved slots: 130 positions accept 128 tokens. A spec whose
    max_length was not clamped at submit (the model was a job still training) must not index past it."""
    from bertq.worker.predict import load_predictor

    predictor = load_predictor(
        str(finetuned("roberta", "classification")), "classify", device="cpu", precision="fp32", max_length=512
    )
    long_text = texts_file.read_text().splitlines()[-1]
    assert len(predictor.tokenizer(long_text)["input_ids"]) > 130
    [result] = predictor.predict([long_text])
    assert result["label"] in ("negative", "positive") and predictor.max_length == 128


def test_submit_refuses_what_the_worker_would(finetuned, arch_models, arch_data, tmp_path):
    """Heads of the wrong task, and cutting an ALBERT whose layers are in several groups."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertq.bulk import build_infer_spec
    from bertq.distillation import build_distill_spec
    from bertq.errors import SpecError
    from bertq.specs import build_evaluate_spec

    ner_model = finetuned("roberta", "ner")
    with pytest.raises(SpecError, match=r"is a token classification \(NER\) checkpoint"):
        build_evaluate_spec(model=str(ner_model), task="sst2", data=str(arch_data["classification"][1]))
    with pytest.raises(SpecError, match="no trained qa head"):
        build_infer_spec(
            model=str(ner_model),
            model_job=None,
            task="qa",
            inputs=[str(arch_data["classification"][1])],
            output=str(tmp_path / "out"),
            question="what?",
        )
    train, evaluation = arch_data["classification"]
    with pytest.raises(SpecError, match=r"longer than --student .* accepts \(128 tokens\)"):
        build_distill_spec(
            teacher=str(finetuned("bert", "classification")),
            teacher_job=None,
            task="sst2",
            train=str(train),
            eval=str(evaluation),
            student=str(arch_models["roberta"]),  # 130 positions, 2 of them reserved
            student_layers=None,
            max_length=129,
        )
    grouped = tmp_path / "albert-groups"
    model = AutoModelForSequenceClassification.from_pretrained(finetuned("albert", "classification"))
    model.config.num_hidden_groups = 2
    AutoModelForSequenceClassification.from_config(model.config).save_pretrained(grouped)
    AutoTokenizer.from_pretrained(arch_models["albert"]).save_pretrained(grouped)
    with pytest.raises(SpecError, match="groups of shared layers"):
        build_distill_spec(
            teacher=str(grouped),
            teacher_job=None,
            task="sst2",
            train=str(train),
            eval=str(evaluation),
            student="teacher",
            student_layers="1",
            max_length=MAX_LENGTH,
        )


FUSED = {"bert", "roberta", "electra", "xlm-roberta"}
"""Architectures whose encoder layers bulk inference replaces by serving layers; the others run as they are."""


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_bulk_inference_serves_each_architecture_its_own_scores(arch, finetuned):
    """Serving layers replace BERT-layout layers only; every other architecture falls back to its own
    layers. Either way the served model scores what the model itself scores."""
    import torch

    from bertq.worker.inference import ServingLayer, run_model
    from bertq.worker.loading import load_trained
    from bertq.worker.predict import load_predictor

    checkpoint = str(finetuned(arch, "classification"))
    predictor = load_predictor(checkpoint, "classify", device="cpu", precision="fp32", max_length=MAX_LENGTH)
    served = any(isinstance(module, ServingLayer) for module in predictor.model.modules())
    assert served == (arch in FUSED)
    texts = ["a stirring , funny and finally transporting film", "dull", "the plot is thin but the acting is fine"]
    features = {k: list(v) for k, v in predictor.tokenizer(texts, truncation=True, max_length=MAX_LENGTH).items()}
    own = run_model(
        load_trained(checkpoint, "classification").eval(),
        features,
        pad_id=predictor.tokenizer.pad_token_id,
        device="cpu",
    )
    got = run_model(predictor.model, features, pad_id=predictor.tokenizer.pad_token_id, device="cpu")
    for expected, result in zip(own, got):
        assert torch.allclose(torch.tensor(expected["logits"]), torch.tensor(result["logits"]), atol=1e-5)
