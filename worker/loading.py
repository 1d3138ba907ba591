"""Loading tokenizers and models for jobs: safetensors only, remote code off unless asked for."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def load_tokenizer(location: str, *, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)


def load_sequence_classifier(location: str, label_names: list[str], *, trust_remote_code: bool = False) -> Any:
    """A classifier with one output per label; a new head is initialised when the checkpoint has none
    (or one of another size), as when fine-tuning a pretrained encoder."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        location,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        ignore_mismatched_sizes=True,
        use_safetensors=True,
        trust_remote_code=trust_remote_code,
    )


def best_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
