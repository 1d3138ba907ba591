"""Students cut from their teacher, the way DistilBERT was initialised: the embeddings, the chosen
encoder layers and the task head keep the teacher's weights; the other layers are dropped.

ALBERT applies one shared layer at every depth: its student is the same shared layer applied fewer
times (`num_hidden_layers` is the count kept; which indices were named makes no difference)."""

from __future__ import annotations

import re
from typing import Any

from bertq.distillation import cut_problem
from bertq.errors import BertqError

# `bert.encoder.layer.3.attention...`, `roberta.encoder.layer.3...`, `distilbert.transformer.layer.3...`
_LAYER_KEY = re.compile(r"^(?P<prefix>.*?(?:encoder|transformer)\.layer\.)(?P<index>\d+)(?P<rest>\..*)$")
_LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layers")


def layer_count(config: Any) -> int:
    for key in _LAYER_COUNT_KEYS:
        if hasattr(config, key):
            return int(getattr(config, key))
    raise BertqError(f"cannot tell how many layers a {config.model_type} model has")


def cut_from_teacher(teacher: Any, layers: list[int]) -> Any:
    """A new model of the teacher's class with only `layers` (in that order), weights copied exactly."""
    config = teacher.config
    problem = cut_problem(config.to_dict())
    if problem:
        raise BertqError(problem)
    total = layer_count(config)
    if not layers or any(not 0 <= i < total for i in layers):
        raise BertqError(f"student layers {layers} must be indices of the teacher's {total} layers (0..{total - 1})")
    student_config = config.__class__.from_dict(config.to_dict())
    for key in _LAYER_COUNT_KEYS:
        if hasattr(student_config, key):
            setattr(student_config, key, len(layers))
    student = teacher.__class__(student_config)
    renumber = {old: new for new, old in enumerate(layers)}
    state = {}
    for key, tensor in teacher.state_dict().items():
        match = _LAYER_KEY.match(key)
        if match is None:
            state[key] = tensor.clone()
        elif int(match["index"]) in renumber:
            state[f"{match['prefix']}{renumber[int(match['index'])]}{match['rest']}"] = tensor.clone()
    student.load_state_dict(state, strict=True)  # every student weight comes from the teacher
    return student
