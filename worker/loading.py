"""Loading tokenizers and models for jobs: safetensors only, remote code off unless asked for."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# Byte-level BPE tokenizers need a prefix space to accept text that is already split into words.
_BYTE_LEVEL_MODELS = {"roberta", "xlm-roberta", "camembert", "longformer", "deberta", "bart", "gpt2", "mpnet"}


def load_config(location: str, *, trust_remote_code: bool = False) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code)


def load_tokenizer(location: str, *, family: str = "classification", trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    options: dict[str, Any] = {}
    if family == "ner" and load_config(location).model_type in _BYTE_LEVEL_MODELS:
        options["add_prefix_space"] = True
    return AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code, **options)


def load_for_training(location: str, family: str, label_names: list[str] | None, *, trust_remote_code: bool = False) -> Any:
    """A model with the family's head; a new head is initialised when the checkpoint has none (or
    one of another size), as when fine-tuning a pretrained encoder."""
    from bertq.worker.families import model_class

    options: dict[str, Any] = {}
    if label_names is not None:
        options = dict(
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
            ignore_mismatched_sizes=True,
        )
    return model_class(family).from_pretrained(location, use_safetensors=True, trust_remote_code=trust_remote_code, **options)


def load_trained(location: str, family: str, *, trust_remote_code: bool = False) -> Any:
    """A fine-tuned model whose head is used as it is (the submit checked that it has one)."""
    from bertq.worker.families import model_class

    return model_class(family).from_pretrained(location, use_safetensors=True, trust_remote_code=trust_remote_code)


def best_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name(device: str) -> str:
    """The accelerator's or the CPU's model name, so numbers from different machines stay apart."""
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    import platform

    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
