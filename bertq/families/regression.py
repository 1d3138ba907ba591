"""Regression: one number per text or text pair (STS-B similarity), a one-output head trained with MSE."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bertq import datafiles
from bertq.families.classification import Classification
from bertq.families.preset import Preset


class Regression(Classification):
    """Texts (or pairs) and a number each; read like classification data, scored by correlation."""

    def carries(self, config: dict[str, Any]) -> bool:
        return config.get("problem_type") == "regression"

    def check_data(self, path: Path, **options: Any) -> tuple[Any, str | None]:
        data, text_column = super().check_data(path, **options)
        if data is not None:
            try:
                targets(data.labels, path=path, column=options["label_column"])
            except datafiles.DataFileError as error:
                options["problems"].append(f"{options['option']}: {error}")
                return None, text_column
        return data, text_column

    def labels_from(self, path: Path, data: datafiles.LabelledData) -> list[str] | None:
        return None  # numbers, not classes

    def check_eval_labels(
        self, path: Path, data: datafiles.LabelledData, labels: list[str], option: str, problems: list[str]
    ) -> None:
        pass


def targets(values: list[str], *, path: Path | str, column: str) -> list[float]:
    """The label column as numbers; raises DataFileError naming the first value that is not one."""
    numbers: list[float] = []
    for row, value in enumerate(values, start=1):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise datafiles.DataFileError(
                f"{path}: example {row} has {column!r} = {value!r}, not a number; a regression task "
                "(stsb) needs a number in every row (use a classification task for class labels)"
            )
        numbers.append(number)
    return numbers


FAMILY = Regression(
    name="regression",
    head_suffix="ForSequenceClassification",
    words="regression",
    main_metric="pearson",
    metrics=("pearson", "spearman", "mse"),
    data_kinds="TSV, CSV or JSONL file with a numeric label column (or hub:OWNER/NAME[#CONFIG][:SPLIT])",
    has_labels=False,
    not_distillable_because="its target is a number, not a distribution over classes to soften",
)

PRESETS = (
    Preset("regression", FAMILY, None, "label"),
    # STS-B: similarity of two sentences, 0 (unrelated) to 5 (same meaning).
    Preset(
        "stsb",
        FAMILY,
        "sentence1",
        "label",
        train="hub:nyu-mll/glue#stsb:train",
        eval="hub:nyu-mll/glue#stsb:validation",
        text_pair_column="sentence2",
    ),
)
