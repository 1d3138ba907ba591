"""Token classification (NER): IOB2 tags per word, from CoNLL column files or JSONL."""

from __future__ import annotations

from pathlib import Path

from bertq import conll
from bertq.datafiles import DataFileError
from bertq.families.family import Family
from bertq.families.preset import Preset


class Ner(Family):
    """Sentences of words and their tags; the tag set is read from the training data."""

    def read_file(self, path: Path) -> list[conll.NerExample]:
        return conll.read_ner(path)

    def labels_from(self, path: Path, data: list[conll.NerExample]) -> list[str] | None:
        return conll.label_list(data)

    def check_eval_labels(
        self, path: Path, data: list[conll.NerExample], labels: list[str], option: str, problems: list[str]
    ) -> None:
        try:
            conll.check_tags(data, labels, path)
        except DataFileError as error:
            problems.append(f"{option}: {error}")


FAMILY = Ner(
    name="ner",
    head_suffix="ForTokenClassification",
    words="token classification (NER)",
    main_metric="entity_f1",
    metrics=("entity_precision", "entity_recall", "entity_f1", "token_accuracy"),
    data_kinds="CoNLL column file or JSONL",
    distillable=True,  # per word: each word's first sub-token, so teacher and student may tokenize differently
)

PRESETS = (
    Preset("ner", FAMILY),
    Preset("conll2003", FAMILY, train="hub:eriktks/conll2003:train", eval="hub:eriktks/conll2003:validation"),
)
