"""Extractive question answering: answer spans in a context, from SQuAD JSON or JSONL files."""

from __future__ import annotations

from pathlib import Path

from bertq import squad
from bertq.families.family import Family
from bertq.families.preset import Preset


class Qa(Family):
    """Questions over contexts; no label set. Long contexts are read in overlapping windows, and one
    file may be split into train and eval by article."""

    def read_file(self, path: Path) -> list[squad.QAExample]:
        return squad.read_squad(path)

    def check_split(self, data: list[squad.QAExample], *, eval_fraction: float, seed: int) -> None:
        squad.split_by_article(data, eval_fraction=eval_fraction, seed=seed)


FAMILY = Qa(
    name="qa",
    head_suffix="ForQuestionAnswering",
    words="question answering",
    main_metric="f1",
    metrics=("exact_match", "f1"),
    data_kinds="SQuAD JSON or JSONL file",
    has_labels=False,
    article_split=True,
    windows=True,
    default_max_length=384,
    not_distillable_because=(
        "its soft labels would be start/end distributions over the teacher's tokens, and a student with "
        "another tokenizer has other token boundaries; bertq does not map them through character offsets yet"
    ),
)

PRESETS = (
    Preset("qa", FAMILY),
    Preset("squad", FAMILY, train="hub:rajpurkar/squad:train", eval="hub:rajpurkar/squad:validation"),
)
