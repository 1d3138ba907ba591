"""Sequence classification: one label per text, from TSV, CSV, JSONL files or a hub dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertq import datafiles, formats
from bertq.families.family import Family
from bertq.families.preset import Preset


class Classification(Family):
    """Texts and their class labels; the label set is read from the training data."""

    def carries(self, config: dict[str, Any]) -> bool:
        return config.get("problem_type") != "regression"  # a one-output regression head is not classes

    def check_data(
        self,
        path: Path,
        *,
        name: str,
        option: str,
        problems: list[str],
        text_column: str | None,
        label_column: str,
        pair_column: str | None = None,
    ) -> tuple[Any, str | None]:
        try:
            if text_column is None:
                columns = datafiles.columns_of(path)
                text_column = formats.guess_text_column(columns)
                if text_column is None:
                    problems.append(
                        f"{option} {name}: cannot tell which column holds the text (columns: "
                        f"{', '.join(columns) or 'none'}); name it with --text-column"
                    )
                    return None, None
            return datafiles.read_labelled(path, text_column, label_column, pair_column), text_column
        except datafiles.DataFileError as error:
            problems.append(f"{option}: {error}")
            return None, text_column

    def labels_from(self, path: Path, data: datafiles.LabelledData) -> list[str] | None:
        return datafiles.check_label_set(path, data.labels)

    def check_eval_labels(
        self, path: Path, data: datafiles.LabelledData, labels: list[str], option: str, problems: list[str]
    ) -> None:
        unseen = sorted(set(data.labels) - set(labels), key=datafiles.label_sort_key)
        if unseen:
            problems.append(
                f"{option}: labels {', '.join(map(repr, unseen[:5]))} never occur in the training data "
                f"({', '.join(map(repr, labels[:10]))}); the model cannot predict them"
            )


LEARNED_NOTHING_MARGIN = 0.005
"""Accuracy within this of the majority-class baseline counts as learning nothing."""


def learned_nothing(metrics: dict[str, float]) -> str | None:
    """A warning when a classifier's accuracy is no better than always answering the most common label."""
    for prefix in ("eval_", ""):
        accuracy, baseline = metrics.get(f"{prefix}accuracy"), metrics.get(f"{prefix}majority_baseline")
        if accuracy is not None and baseline is not None and accuracy <= baseline + LEARNED_NOTHING_MARGIN:
            return (
                f"accuracy {accuracy:.4f} is no better than always answering the most common label "
                f"({baseline:.4f} of the evaluation data): the model learned nothing useful. Train longer, "
                "raise --lr, use more data, or check the labels"
            )
    return None


FAMILY = Classification(
    name="classification",
    head_suffix="ForSequenceClassification",
    words="sequence classification",
    main_metric="accuracy",
    metrics=("accuracy", "f1"),
    data_kinds="TSV, CSV or JSONL file (or hub:OWNER/NAME[#CONFIG][:SPLIT])",
    named_classes=True,
    distillable=True,
    distills_transfer_text=True,
)

PRESETS = (
    Preset("classification", FAMILY, None, "label"),
    # Sentence pairs (GLUE): the model reads the two texts as one input, [CLS] a [SEP] b [SEP].
    Preset(
        "qnli",
        FAMILY,
        "question",
        "label",
        {"0": "entailment", "1": "not_entailment"},
        train="hub:nyu-mll/glue#qnli:train",
        eval="hub:nyu-mll/glue#qnli:validation",
        text_pair_column="sentence",
    ),
    Preset(
        "mrpc",
        FAMILY,
        "sentence1",
        "label",
        {"0": "not_equivalent", "1": "equivalent"},
        train="hub:nyu-mll/glue#mrpc:train",
        eval="hub:nyu-mll/glue#mrpc:validation",
        text_pair_column="sentence2",
    ),
    Preset(
        "rte",
        FAMILY,
        "sentence1",
        "label",
        {"0": "entailment", "1": "not_entailment"},
        train="hub:nyu-mll/glue#rte:train",
        eval="hub:nyu-mll/glue#rte:validation",
        text_pair_column="sentence2",
    ),
    Preset(
        "mnli",
        FAMILY,
        "premise",
        "label",
        {"0": "entailment", "1": "neutral", "2": "contradiction"},
        train="hub:nyu-mll/glue#mnli:train",
        eval="hub:nyu-mll/glue#mnli:validation_matched",
        text_pair_column="hypothesis",
    ),
    Preset(
        "sst2",
        FAMILY,
        "sentence",
        "label",
        {"0": "negative", "1": "positive"},
        train="hub:nyu-mll/glue#sst2:train",
        eval="hub:nyu-mll/glue#sst2:validation",
    ),
)
