"""Matching a trained head's classes to the labels of the data it is used on.

A model fine-tuned elsewhere names its classes in `id2label` (NEGATIVE/POSITIVE, LABEL_0/LABEL_1,
entailment/...), while the data has its own values (0/1, pos/neg). `match_labels` says, for each
class id of the model, which data label it predicts, or why it cannot tell. The rules, in order:

1. `--label-map NEGATIVE=0,POSITIVE=1`: as the user says (it must name every class);
2. the names are the data's label values, or their names (a ClassLabel's, or a preset's), compared
   case-insensitively: NEGATIVE ↔ negative (every label of the data must be some class's);
3. generic names LABEL_0..LABEL_n-1 ↔ the data's ids 0..n-1.

Anything else is refused at submit with both lists, and the `--label-map` that would fix it.
"""

from __future__ import annotations

import re

_GENERIC = re.compile(r"^LABEL_(\d+)$")


def parse_label_map(value: str | None, problems: list[str]) -> dict[str, str] | None:
    """`NEGATIVE=0,POSITIVE=1` → {"NEGATIVE": "0", "POSITIVE": "1"}."""
    if not value:
        return None
    mapping: dict[str, str] = {}
    for part in value.split(","):
        model_label, sep, data_label = part.partition("=")
        if not sep or not model_label.strip() or not data_label.strip():
            problems.append(
                f"--label-map {value!r}: write MODEL_LABEL=DATA_LABEL pairs separated by commas, "
                "e.g. NEGATIVE=0,POSITIVE=1"
            )
            return None
        mapping[model_label.strip()] = data_label.strip()
    return mapping


def match_labels(
    model_names: list[str],
    data_labels: list[str],
    *,
    data_names: dict[str, str] | None = None,
    label_map: dict[str, str] | None = None,
    who: str = "the model",
) -> tuple[list[str] | None, str | None]:
    """(the data label of each model class in class-id order, None) or (None, the problem)."""
    data_names = data_names or {}
    shown = f"{who} predicts {model_names}, the data has labels {data_labels}" + (
        f" ({', '.join(f'{k}={v}' for k, v in data_names.items())})" if data_names else ""
    )
    if label_map is not None:
        by_key = {k.lower(): v for k, v in label_map.items()}
        missing = [name for name in model_names if name.lower() not in by_key]
        if missing:
            return None, f"--label-map does not name {', '.join(missing)}: {shown}; map every class of the model"
        mapped = [_data_value(by_key[name.lower()], data_labels, data_names) for name in model_names]
        unknown = [by_key[name.lower()] for name, value in zip(model_names, mapped) if value is None]
        if unknown:
            return None, f"--label-map maps to {', '.join(unknown)}, which the data does not have: {shown}"
        return _distinct([m for m in mapped if m is not None], shown)
    by_name = [_data_value(name, data_labels, data_names) for name in model_names]
    if set(data_labels) <= {v for v in by_name if v is not None}:
        # Every data label is some class's; a class the data never uses keeps its own name.
        return _distinct([v if v is not None else name for v, name in zip(by_name, model_names)], shown)
    generic = [_GENERIC.match(name) for name in model_names]
    if all(generic) and set(data_labels) <= {str(i) for i in range(len(model_names))}:
        return [str(int(m[1])) for m in generic if m], None
    suggestion = ",".join(f"{name}={label}" for name, label in zip(model_names, data_labels))
    return None, f"{shown}, and they cannot be matched by name; say which is which with --label-map {suggestion}"


def _data_value(name: str, data_labels: list[str], data_names: dict[str, str]) -> str | None:
    lowered = name.lower()
    for label in data_labels:
        if label.lower() == lowered or data_names.get(label, "").lower() == lowered:
            return label
    return None


def _distinct(values: list[str], shown: str) -> tuple[list[str] | None, str | None]:
    if len(set(values)) != len(values):
        return None, f"{shown}: two classes of the model would predict the same data label; fix --label-map"
    return values, None
