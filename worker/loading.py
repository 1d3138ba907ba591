"""Loading tokenizers and models for jobs: safetensors only, remote code off, unless the job asks.

The job's spec carries the opt-ins (`--trust-remote-code`, `--allow-pickle`); the runner adopts them
with `set_policy` before the job starts, and every load below follows them."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from bertq.worker.faults import arm_out_of_memory

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# Byte-level BPE tokenizers need a prefix space to accept text that is already split into words.
_BYTE_LEVEL_MODELS = {"roberta", "xlm-roberta", "camembert", "longformer", "deberta", "bart", "gpt2", "mpnet"}


@dataclass(frozen=True)
class LoadPolicy:
    """What the running job allows its models to do as they load (its spec's opt-in flags)."""

    trust_remote_code: bool = False
    allow_pickle: bool = False


_current = threading.local()
"""The running job's policy, per thread: a `--pool threads` worker runs several jobs at once."""


def set_policy(spec: dict[str, Any]) -> None:
    """Adopt the job's opt-ins; everything this thread loads for the job follows them."""
    _current.policy = LoadPolicy(
        trust_remote_code=spec.get("trust_remote_code") is True, allow_pickle=spec.get("allow_pickle") is True
    )


def _policy_now() -> LoadPolicy:
    return getattr(_current, "policy", None) or LoadPolicy()


def local_model(location: str) -> str:
    """A model folder named by an object-store URL, as its local copy (downloaded once, cached)."""
    from bertq import store

    return str(store.local_path(location)) if store.is_url(location) else location


def check_loadable(location: str) -> None:
    """Refuse a local folder whose weights are pickle-only or that ships its own code, unless the job
    allowed it: the worker checks again what the CLI checked, as a forged or edited spec skips the CLI."""
    from bertq.errors import BertqError
    from bertq.models import resolve_model

    if not os.path.isdir(location):
        return  # a hub id: transformers enforces trust_remote_code and use_safetensors itself
    policy = _policy_now()
    problems = resolve_model(location).loading_problems(
        trust_remote_code=policy.trust_remote_code, allow_pickle=policy.allow_pickle
    )
    if problems:
        raise BertqError("; ".join(problems))


def _weights_options() -> dict[str, Any]:
    policy = _policy_now()
    return {"use_safetensors": None if policy.allow_pickle else True, "trust_remote_code": policy.trust_remote_code}


def load_tokenizer(location: str, *, family: str | None = None) -> Any:
    """The model's tokenizer, set up for how the family (a spec's family name) gives it text; without a
    family, for plain texts."""
    from transformers import AutoConfig, AutoTokenizer

    from bertq.worker.families import worker_family

    location = local_model(location)
    check_loadable(location)
    trust = _policy_now().trust_remote_code
    options: dict[str, Any] = {}
    words_given = family is not None and worker_family(family).words_given
    if words_given and AutoConfig.from_pretrained(location, trust_remote_code=trust).model_type in _BYTE_LEVEL_MODELS:
        options["add_prefix_space"] = True
    return AutoTokenizer.from_pretrained(location, trust_remote_code=trust, **options)


def load_for_training(location: str, family: str, label_names: list[str] | None) -> Any:
    """A model with the family's head; a new head is initialised when the checkpoint has none (or
    one of another size), as when fine-tuning a pretrained encoder."""
    from bertq.worker.families import worker_family

    head = worker_family(family)
    return load_with(head.model_class(), location, **head.head_options(label_names))


def load_trained(location: str, family: str) -> Any:
    """A fine-tuned model whose head is used as it is (the submit checked that it has one)."""
    from bertq.worker.families import worker_family

    return load_with(worker_family(family).model_class(), location)


def load_with(auto_class: Any, location: str, **options: Any) -> Any:
    """`auto_class.from_pretrained(location, **options)` under the job's policy."""
    location = local_model(location)
    check_loadable(location)
    return arm_out_of_memory(auto_class.from_pretrained(location, **_weights_options(), **options))


NATIVE_BF16_CAPABILITY = (8, 0)
"""NVIDIA GPUs compute bf16 natively from Ampere (compute capability 8.0: A100, A10, L4, H100, H200)
on; older ones (T4 7.5, V100 7.0) only emulate it, slowly, though torch.cuda.is_bf16_supported()
counts emulation by default."""


def gpu_capability() -> tuple[int, int] | None:
    """The compute capability of this process's GPU, or None without one."""
    import torch

    return tuple(torch.cuda.get_device_capability()) if torch.cuda.is_available() else None  # type: ignore[return-value]


def half_precision(capability: tuple[int, int] | None) -> str:
    """The 16-bit precision a device runs natively: bf16 where the GPU has it, fp16 (with loss scaling
    when training) on an older GPU, fp32 without a GPU."""
    if capability is None:
        return "fp32"
    return "bf16" if tuple(capability) >= NATIVE_BF16_CAPABILITY else "fp16"


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
