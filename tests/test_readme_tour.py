"""The README's tour, pasted line by line into a shell after a first job (the demo's), on tiny data
and a tiny model: every command runs, and each step uses the model it says it uses (the fine-tune
whose id the tour captured, not job 1)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]


def tour_lines() -> list[str]:
    """The tour's shell lines, as a person would paste them (continuations joined)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## A tour", 1)[1].split("\n## ", 1)[0]
    lines = [line[4:] for line in block.splitlines() if line.startswith("    ")]
    return re.sub(r"\\\n\s*", " ", "\n".join(lines)).splitlines()


def _tiny_data(folder: Path) -> Path:
    """../shared/data's layout, each file cut to a few records."""
    import json

    for name, count in (("sst2/train_sentences.tsv", 40), ("sst2/dev.tsv", 20), ("qnli-squad/train.tsv", 40),
                        ("qnli-squad/dev.tsv", 20), ("corpus/goemotions_reddit_comments.tsv", 40)):  # fmt: skip
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join((SHARED_DATA / name).read_text(encoding="utf-8").splitlines()[: count + 1]) + "\n")
    for name in ("train.txt", "valid.txt"):
        sentences = (SHARED_DATA / "conll2003" / name).read_text(encoding="utf-8").split("\n\n")[:20]
        (folder / "conll2003").mkdir(exist_ok=True)
        (folder / "conll2003" / name).write_text("\n\n".join(sentences) + "\n")
    squad = json.loads((SHARED_DATA / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    articles = [{"title": a["title"], "paragraphs": a["paragraphs"][:2]} for a in squad["data"][:5]]
    (folder / "squad").mkdir(exist_ok=True)
    (folder / "squad" / "dev-v1.1.json").write_text(json.dumps({"version": "1.1", "data": articles}))
    return folder


@pytest.mark.slow
def test_the_readme_tour_runs_after_the_demo(bertq, tiny_model, tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from bertq.db import jobs as q
    from bertq.db.models import JobStatus

    # A tiny BERT shaped like MiniLM where the tour relies on it: 6 layers (the student keeps 0,2,4)
    # and 512 positions (the tour's --max-length defaults, 128 and qa's 384, apply).
    model = tmp_path / "tour-model"
    config = BertConfig.from_pretrained(tiny_model)
    config.max_position_embeddings, config.num_hidden_layers = 512, 6
    BertModel(config).save_pretrained(model)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(model)
    data = _tiny_data(tmp_path / "data")
    with bertq.sessions()() as s, s.begin():  # the demo's job: the tour's ids must not assume it is absent
        demo = q.create_job(session=s, kind="finetune", spec={"model": "minilm", "task": "sst2"}, queue="cpu",
                            priority=5, max_attempts=1).id  # fmt: skip
    with bertq.sessions()() as s, s.begin():
        q.claim(session=s, job_id=demo, worker="w", lease_seconds=60)
        q.finish(session=s, job_id=demo, attempt=1, status=JobStatus.SUCCEEDED, result={})

    substitutions = {
        ". .venv/bin/activate": f'export PATH="{Path(sys.executable).parent}:$PATH"',
        "$(realpath ../shared)": str(tmp_path),
        "D=../shared/data": f"D={data}",
        "--model minilm": f"--model {model}",
        "'corpus/*.txt'": f"'{data}/corpus/*.tsv'",
        # Trimmed to what tiny data needs: one epoch each, two shards.
        "--epochs 3 --wait": "--epochs 1 --wait",
        "--eval $D/conll2003/valid.txt": "--eval $D/conll2003/valid.txt --epochs 1",
        "--eval-fraction 0.2 --epochs 2": "--eval-fraction 0.2 --epochs 1",
        "--shards 8": "--shards 2",
    }
    script = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    for line in tour_lines():
        for old, new in substitutions.items():
            line = line.replace(old, new)
        script.append(line)
    for old in substitutions:
        assert any(old in line for line in tour_lines()), f"the tour no longer has {old!r}: update this test"
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(["bash", "-c", "\n".join(script)], env=bertq.env, cwd=work, capture_output=True,
                            text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    jobs = bertq.json("jobs")
    by_kind: dict[str, list[dict]] = {}
    for job in jobs:
        by_kind.setdefault(job["kind"], []).append(job)
    sst = min(j["id"] for j in by_kind["finetune"] if j["id"] != demo)
    assert sst != demo
    evaluations = [bertq.json("show", str(j["id"]))["spec"] for j in by_kind["evaluate"]]
    assert any(e.get("model_job_id") == sst and e.get("precision") == "int8" for e in evaluations)
    [pipeline] = by_kind["distill"]
    assert bertq.json("show", str(pipeline["id"]))["status"] == "SUCCEEDED"
    assert bertq.json("show", str(pipeline["id"]))["spec"]["teacher_job_id"] == sst
    [bulk] = [j for j in by_kind["infer"]]
    assert bertq.json("show", str(bulk["id"]))["spec"]["model_job_id"] == sst
    assert (work / "report.html").is_file() and "bertq decision report" in (work / "report.html").read_text()
