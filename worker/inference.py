"""The fast path for running an encoder over many inputs: length-sorted batches, each padded only to
its own longest input, no gradients, and the requested precision.

Measured on the 2-core CPU (shared/NOTES.md, bench/infer_bench.py): sorting by length with dynamic
padding is about 2x a HF pipeline with batch_size=32 on short comments (a median 2.02x with the
first-token-only last layer below); bf16 on a CPU with AMX 5.4x with the weights themselves in bf16
(what bertq does), with the same labels as fp32 on 99.975% of 4,000 comments. Every job that runs a
model over data (evaluation during training, the evaluate job, teacher outputs) goes through here.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

log = logging.getLogger("bertq.inference")

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def prepare_model(model: Any, *, precision: str, device: str) -> Any:
    """Put the model on `device` in eval mode: weights in bf16 for bf16 (and fp16 on a GPU), quantised
    for int8 (dynamic, Linear layers, CPU)."""
    model.eval()
    if precision == "int8":
        if device != "cpu":
            raise ValueError("int8 is dynamic quantisation of the Linear layers, which runs on the CPU only")
        # The tutorial's recipe: weights stored as int8, activations quantised on the fly.
        return torch.ao.quantization.quantize_dynamic(model.to("cpu"), {torch.nn.Linear}, dtype=torch.qint8)
    if precision == "bf16":  # bf16 weights: no per-op casts (1736 vs 1329/s autocast, same labels, measured)
        return model.to(device=device, dtype=torch.bfloat16)
    if precision == "fp16" and device == "cuda":
        return model.to(device=device, dtype=torch.float16)
    return model.to(device)


def autocast(precision: str, device: str) -> contextlib.AbstractContextManager:
    """fp16 on a CPU runs under autocast (its weights stay fp32); every other precision is in the weights."""
    if precision == "fp16" and device == "cpu":
        return torch.autocast(device_type="cpu", dtype=torch.float16)
    return contextlib.nullcontext()


def length_sorted_batches(lengths: Sequence[int], *, batch_size: int, max_tokens: int | None = None) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length, longest first (so memory peaks early).

    A batch closes at `batch_size` inputs, or when padding it to its longest would exceed
    `max_tokens` tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for index in order:
        longest = lengths[batch[0]] if batch else lengths[index]
        if batch and (len(batch) >= batch_size or (max_tokens and longest * (len(batch) + 1) > max_tokens)):
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


def collate(features: dict[str, list], indices: list[int], *, pad_id: int, device: str) -> dict[str, torch.Tensor]:
    longest = max(len(features["input_ids"][i]) for i in indices)
    batch: dict[str, torch.Tensor] = {}
    for name in MODEL_INPUTS:
        if name not in features:
            continue
        fill = pad_id if name == "input_ids" else 0
        rows = [list(features[name][i]) + [fill] * (longest - len(features[name][i])) for i in indices]
        batch[name] = torch.tensor(rows, dtype=torch.long)
    if "attention_mask" not in batch:
        lengths = torch.tensor([len(features["input_ids"][i]) for i in indices])
        batch["attention_mask"] = (torch.arange(longest)[None, :] < lengths[:, None]).long()
    pin = device == "cuda"
    return {k: (v.pin_memory() if pin else v).to(device, non_blocking=pin) for k, v in batch.items()}


def run_model(
    model: Any,
    features: dict[str, list],
    *,
    pad_id: int,
    device: str,
    precision: str = "fp32",
    batch_size: int = 64,
    max_tokens: int | None = 16384,
    outputs: tuple[str, ...] = ("logits",),
    indices: Sequence[int] | None = None,
) -> list[dict[str, np.ndarray]]:
    """One output dict per input (in input order), each output trimmed to the input's length when it
    is per token. `features` holds token-id lists (no padding) as a tokenizer returns them."""
    chosen = list(indices) if indices is not None else list(range(len(features["input_ids"])))
    lengths = [len(features["input_ids"][i]) for i in chosen]
    results: list[dict[str, np.ndarray] | None] = [None] * len(chosen)

    def consume(batch_positions: list[int], output: Any, _batch: dict[str, torch.Tensor]) -> None:
        arrays = {name: getattr(output, name).float().cpu().numpy() for name in outputs}
        for row, position in enumerate(batch_positions):
            length = lengths[position]
            results[position] = {
                name: array[row, :length] if _per_token(name, array) else array[row] for name, array in arrays.items()
            }

    run_batches(model, features, lengths, consume, pad_id=pad_id, device=device, precision=precision,
                batch_size=batch_size, max_tokens=max_tokens, indices=chosen)
    return results  # type: ignore[return-value]


def run_batches(
    model: Any,
    features: dict[str, list],
    lengths: Sequence[int],
    consume: Callable[[list[int], Any, dict[str, torch.Tensor]], None],
    *,
    pad_id: int,
    device: str,
    precision: str,
    batch_size: int,
    max_tokens: int | None,
    indices: Sequence[int] | None = None,
) -> None:
    """The batch loop: inputs in length-sorted batches under `inference_mode` and the precision,
    `consume(positions, output, batch)` after each; an out-of-memory error re-plans what is left at
    half the tokens. Positions index `lengths` (and `indices`, which maps them to rows of `features`;
    the identity when None)."""
    pending = deque(length_sorted_batches(lengths, batch_size=batch_size, max_tokens=max_tokens))
    with torch.inference_mode(), autocast(precision, device):
        while pending:
            positions = pending.popleft()
            rows = positions if indices is None else [indices[p] for p in positions]
            try:
                batch = collate(features, rows, pad_id=pad_id, device=device)
                output = model(**batch)
            except Exception as error:  # noqa: BLE001 - only out-of-memory is handled here
                if not is_out_of_memory(error):
                    raise
                pending = deque(rebatch_after_out_of_memory(positions, list(pending), lengths, batch_size=batch_size,
                                                            error=error, device=device))
                continue
            consume(positions, output, batch)


class OutOfMemory(RuntimeError):
    """Even one input does not fit in the device's memory."""


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's out-of-memory error (also what the fault injection raises), or the CPU allocator's."""
    message = str(error).lower()
    return isinstance(error, (OutOfMemory, torch.cuda.OutOfMemoryError)) or "out of memory" in message \
        or "can't allocate memory" in message


def rebatch_after_out_of_memory(failed: list[int], pending: list[list[int]], lengths: Sequence[int], *,
                                batch_size: int, error: BaseException, device: str) -> list[list[int]]:
    """Every input not yet run (the failed batch's and the pending ones) in new batches of at most
    half the tokens the failed batch held, so later batches do not run out of memory again. A batch
    of one cannot shrink: it fails with what to change."""
    longest = max(lengths[i] for i in failed)
    if len(failed) == 1:
        raise OutOfMemory(
            f"one input of {longest} tokens does not fit in memory on {device} ({error}); "
            "lower --max-length or use a device with more memory"
        ) from error
    if device == "cuda":
        torch.cuda.empty_cache()
    budget = max(1, longest * len(failed) // 2)
    log.warning("out of memory on a batch of %d inputs (%d tokens padded); going on with batches of at most %d tokens",
                len(failed), longest * len(failed), budget)
    remaining = failed + [i for batch in pending for i in batch]
    sub_lengths = [lengths[i] for i in remaining]
    return [[remaining[p] for p in batch]
            for batch in length_sorted_batches(sub_lengths, batch_size=batch_size, max_tokens=budget)]


def _per_token(name: str, array: np.ndarray) -> bool:
    """Token classification logits are [batch, seq, labels]; QA start/end logits are [batch, seq]."""
    return array.ndim == 3 or name in ("start_logits", "end_logits")


FIRST_TOKEN_READERS = {
    "classify": {"BertForSequenceClassification", "ErnieForSequenceClassification", "RobertaForSequenceClassification",
                 "XLMRobertaForSequenceClassification", "CamembertForSequenceClassification",
                 "ElectraForSequenceClassification"},
    "embed": {"BertModel", "ErnieModel", "RobertaModel", "XLMRobertaModel", "CamembertModel", "ElectraModel"},
}
"""Models whose output reads only the first token's final hidden state: classifiers whose head is the
[CLS] (<s>) pooler or takes `features[:, 0]`, and encoders whose embedding is CLS-pooled."""


def read_first_token_only(model: Any, *, task: str, pooling: str = "mean") -> bool:
    """When a task reads only the first token's final state (a [CLS] classifier; zero-shot's NLI
    classifier; a CLS-pooled embedding), let the last encoder layer compute that one row: its keys and
    values still come from every token, but its query, attention output and feed-forward (10/12 of the
    layer's matmul work, 14% of a 6-layer encoder's) run for one position instead of all. The same
    arithmetic for that row, so the same outputs up to float rounding. Only for the BERT-layout
    families listed above; any other model is left as it is. Returns whether the model was changed."""
    family = "embed" if task == "embed" else "classify" if task in ("classify", "zero-shot") else None
    if family is None or (task == "embed" and pooling != "cls"):
        return False
    if type(model).__name__ not in FIRST_TOKEN_READERS[family]:
        return False
    config = model.config
    if config.is_decoder or getattr(config, "_attn_implementation", None) not in ("eager", "sdpa"):
        return False
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if not layers or isinstance(layers[-1], FirstTokenLayer):
        return False
    last = layers[-1]
    attention = getattr(getattr(last, "attention", None), "self", None)
    needed = ("query", "key", "value", "num_attention_heads", "attention_head_size", "scaling")
    if attention is None or not all(hasattr(attention, name) for name in needed) \
            or not all(hasattr(last, name) for name in ("intermediate", "output")) or not hasattr(last.attention, "output"):
        return False
    layers[-1] = FirstTokenLayer(last)
    return True


class FirstTokenLayer(torch.nn.Module):
    """A BERT-layout encoder layer computing only the first position's output (see
    `read_first_token_only`); its output is [batch, 1, hidden]."""

    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args: Any,
                **kwargs: Any) -> torch.Tensor:
        layer = self.layer
        attention = layer.attention.self
        batch, length, _ = hidden_states.shape
        heads, size = attention.num_attention_heads, attention.attention_head_size
        first = hidden_states[:, :1]
        query = attention.query(first).view(batch, 1, heads, size).transpose(1, 2)
        key = attention.key(hidden_states).view(batch, length, heads, size).transpose(1, 2)
        value = attention.value(hidden_states).view(batch, length, heads, size).transpose(1, 2)
        scores = torch.matmul(query, key.transpose(2, 3)) * attention.scaling
        if attention_mask is not None:
            mask = attention_mask[:, :, :1, :] if attention_mask.dim() == 4 else attention_mask[:, None, None, :]
            if mask.dtype == torch.bool:  # True: attend (sdpa's form); eager's is additive already
                mask = torch.zeros(mask.shape, dtype=scores.dtype, device=mask.device).masked_fill(
                    ~mask, torch.finfo(scores.dtype).min)
            scores = scores + mask
        context = torch.matmul(torch.softmax(scores, dim=-1), value).transpose(1, 2).reshape(batch, 1, heads * size)
        attention_output = layer.attention.output(context, first)
        return layer.output(layer.intermediate(attention_output), attention_output)
