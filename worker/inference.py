"""The fast path for running an encoder over many inputs: length-sorted batches, each padded only to
its own longest input, no gradients, and the requested precision.

Measured on the 2-core CPU (shared/NOTES.md, bench/infer_bench.py): sorting by length with dynamic
padding is about 1.9x a HF pipeline with batch_size=32 on short comments, and 2.3x with bulk
inference's serving layers (`serve_encoder`: fused encoder layers, a first-token-only last layer);
bf16 on a CPU with AMX about 5x, with the weights themselves in bf16 (what bertq does). Every job
that runs a model over data (evaluation during training, the evaluate job, teacher outputs) goes
through here; only bulk inference swaps in the serving layers."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from bertq.errors import BertqError
from bertq.infer_tasks import get_infer_task

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
        return quantize_int8(model.to("cpu"))
    if precision == "bf16":  # bf16 weights: no per-op casts (1736 vs 1329/s autocast, same labels, measured)
        return model.to(device=device, dtype=torch.bfloat16)
    if precision == "fp16" and device == "cuda":
        return model.to(device=device, dtype=torch.float16)
    return model.to(device)


INT8_BACKENDS = ("torch", "torchao")
"""`torch`: torch's dynamic quantisation (torch.ao.quantization.quantize_dynamic), deprecated in favour
of torchao but still in torch 2.13. `torchao`: torchao's quantize_ (pip install torchao), the API
torch's notice points to. On this 2-core CPU (`bench/int8_bench.py --rounds 5`, MiniLM-shaped Linear
stack, 2,048 rows, torchao 0.18, alternating rounds while another job trained): torch's int8 ran at
2.52x fp32's speed, torchao's Int8DynamicActivationInt8Weight at 0.71x and Int8WeightOnly at 0.84x
(slower than not quantising). So bertq uses torch's while torch has it; BERTQ_INT8_BACKEND picks."""


def quantize_int8(model: Any) -> Any:
    """The tutorial's recipe: Linear weights stored as int8, activations quantised on the fly."""
    backend = os.environ.get("BERTQ_INT8_BACKEND") or ("torch" if _has_torch_dynamic() else "torchao")
    if backend not in INT8_BACKENDS:
        raise BertqError(f"BERTQ_INT8_BACKEND={backend!r}: choose {' or '.join(INT8_BACKENDS)}")
    if backend == "torchao":
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
        except ImportError:
            raise BertqError(
                "int8 needs torchao with this torch (torch.ao.quantization.quantize_dynamic is gone): "
                "pip install torchao, or evaluate in fp32/bf16"
            ) from None
        quantize_(model, Int8DynamicActivationInt8WeightConfig())
        return model
    with warnings.catch_warnings():  # torch's notice that this API moves to torchao (see INT8_BACKENDS)
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _has_torch_dynamic() -> bool:
    return hasattr(getattr(getattr(torch, "ao", None), "quantization", None), "quantize_dynamic")


def autocast(precision: str, device: str) -> contextlib.AbstractContextManager:
    """fp16 on a CPU runs under autocast (its weights stay fp32); every other precision is in the weights."""
    if precision == "fp16" and device == "cpu":
        return torch.autocast(device_type="cpu", dtype=torch.float16)
    return contextlib.nullcontext()


MIN_BATCH_ROWS = 8
"""Batch-invariant runs: a smaller batch is run with its last row repeated up to this many (the
copies' outputs dropped): fp32 matrix kernels on this CPU chose another summation order below about
8 rows, so one text's scores changed in the 8th digit with the batch it shared."""


def padded_length(length: int, cap: int) -> int:
    """The length an input of `length` tokens is padded to: itself up to 32 tokens, then rounded up to
    a multiple of 8 (to 128), 16 (to 256) or 32, never above `cap` (the longest the model takes).

    A function of the input alone, so what a text is padded to, and so its outputs (padding changes
    attention's summation order: bf16 scores moved in the 4th digit), do not depend on which texts
    share its batch: a result-cache run of the misses alone scores each one exactly as a full run.
    Short texts are many per length and are not padded at all; a long one wastes at most 1/8."""
    if length <= 32:
        return length
    step = 8 if length <= 128 else 16 if length <= 256 else 32
    return max(length, min(cap, -(-length // step) * step))


def length_sorted_batches(
    lengths: Sequence[int], *, batch_size: int, max_tokens: int | None = None, cap: int | None = None
) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length, longest first (so memory peaks early).

    A batch closes at `batch_size` inputs, or when padding it to its longest would exceed `max_tokens`
    tokens. With `cap` (batch-invariant runs), a batch also holds a single `padded_length` under it."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    width = 0
    for index in order:
        padded = padded_length(lengths[index], cap) if cap else lengths[index]
        if not batch:
            width = padded
        elif (
            len(batch) >= batch_size
            or (cap and padded != width)
            or (max_tokens and width * (len(batch) + 1) > max_tokens)
        ):
            yield batch
            batch, width = [], padded
        batch.append(index)
    if batch:
        yield batch


def _fill_rows(rows: list[int], length: int, max_tokens: int | None) -> list[int]:
    """`rows` with its last repeated up to MIN_BATCH_ROWS, where the token budget allows."""
    wanted = MIN_BATCH_ROWS
    if max_tokens:
        wanted = min(wanted, max(1, max_tokens // max(1, length)))
    return rows + [rows[-1]] * (wanted - len(rows)) if len(rows) < wanted else rows


def _first_rows(value: Any, count: int) -> Any:
    """A model output (or batch) cut to its first `count` rows: tensors, tuples of them, mappings."""
    if isinstance(value, torch.Tensor):
        return value[:count] if value.dim() > 0 else value
    if isinstance(value, tuple):
        return tuple(_first_rows(item, count) for item in value)
    if isinstance(value, dict):  # ModelOutput is an OrderedDict; rebuild it as its own class
        return type(value)(**{key: _first_rows(item, count) for key, item in value.items()})
    return value


def model_inputs(model: Any) -> tuple[str, ...]:
    """The MODEL_INPUTS this model reads. Segment ids (`token_type_ids`) only where the model has two
    or more segment embeddings to look them up in: DistilBERT has none, DeBERTa-v2 may have 0, and
    RoBERTa / XLM-R have one, so a text pair's segment ids of 1 would index past the table; yet their
    tokenizers (or one saved with the checkpoint) may still return them."""
    if getattr(model.config, "type_vocab_size", 0) >= 2:
        return MODEL_INPUTS
    return tuple(name for name in MODEL_INPUTS if name != "token_type_ids")


def collate(
    features: dict[str, list],
    indices: list[int],
    *,
    pad_id: int,
    device: str,
    inputs: tuple[str, ...] = MODEL_INPUTS,
    pad_to: int = 0,
) -> dict[str, torch.Tensor]:
    longest = max(pad_to, *(len(features["input_ids"][i]) for i in indices))
    batch: dict[str, torch.Tensor] = {}
    for name in inputs:
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

    run_batches(
        model,
        features,
        lengths,
        consume,
        pad_id=pad_id,
        device=device,
        precision=precision,
        batch_size=batch_size,
        max_tokens=max_tokens,
        indices=chosen,
    )
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
    length_cap: int | None = None,
) -> None:
    """The batch loop: inputs in length-sorted batches under `inference_mode` and the precision,
    `consume(positions, output, batch)` after each; an out-of-memory error re-plans what is left at
    half the tokens. Positions index `lengths` (and `indices`, which maps them to rows of `features`;
    the identity when None).

    With `length_cap` (the longest input the model takes), the run is batch-invariant: each input is
    padded to its `padded_length`, a batch holds one such length and at least MIN_BATCH_ROWS rows,
    so an input's outputs do not depend on the others run with it (bulk inference, whose result
    cache must write what a full run would). Without it, each batch is padded to its own longest
    and holds only its inputs: what evaluation's batch-1 latency must time."""
    cap = length_cap  # None: batches padded to their longest, nothing repeated
    pending = deque(length_sorted_batches(lengths, batch_size=batch_size, max_tokens=max_tokens, cap=cap))
    inputs = model_inputs(model)
    fill = cap is not None  # until an out-of-memory error: no repeated rows after that
    with torch.inference_mode(), autocast(precision, device):
        while pending:
            positions = pending.popleft()
            rows = positions if indices is None else [indices[p] for p in positions]
            width = padded_length(lengths[positions[0]], cap) if cap else 0
            filled = _fill_rows(rows, width, max_tokens) if fill else rows
            try:
                batch = collate(features, filled, pad_id=pad_id, device=device, inputs=inputs, pad_to=width)
                output = model(**batch)
                if len(filled) > len(rows):
                    output, batch = _first_rows(output, len(rows)), _first_rows(batch, len(rows))
            except Exception as error:  # noqa: BLE001 - only out-of-memory is handled here
                if not is_out_of_memory(error):
                    raise
                fill = False  # memory is short: no repeated rows from here on
                pending = deque(
                    rebatch_after_out_of_memory(
                        positions, list(pending), lengths, batch_size=batch_size, error=error, device=device, cap=cap
                    )
                )
                continue
            consume(positions, output, batch)


class OutOfMemory(RuntimeError):
    """Even one input does not fit in the device's memory."""


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's out-of-memory error (also what the fault injection raises), or the CPU allocator's."""
    message = str(error).lower()
    return (
        isinstance(error, (OutOfMemory, torch.cuda.OutOfMemoryError))
        or "out of memory" in message
        or "can't allocate memory" in message
    )


def rebatch_after_out_of_memory(
    failed: list[int],
    pending: list[list[int]],
    lengths: Sequence[int],
    *,
    batch_size: int,
    error: BaseException,
    device: str,
    cap: int | None = None,
) -> list[list[int]]:
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
    log.warning(
        "out of memory on a batch of %d inputs (%d tokens padded); going on with batches of at most %d tokens",
        len(failed),
        longest * len(failed),
        budget,
    )
    remaining = failed + [i for batch in pending for i in batch]
    sub_lengths = [lengths[i] for i in remaining]
    return [
        [remaining[p] for p in batch]
        for batch in length_sorted_batches(sub_lengths, batch_size=batch_size, max_tokens=budget, cap=cap)
    ]


def _per_token(name: str, array: np.ndarray) -> bool:
    """Token classification logits are [batch, seq, labels]; QA start/end logits are [batch, seq]."""
    return array.ndim == 3 or name in ("start_logits", "end_logits")


ENCODER_LAYERS = {"BertLayer", "ErnieLayer", "RobertaLayer", "XLMRobertaLayer", "CamembertLayer", "ElectraLayer"}
"""Encoder layers of the BERT layout (self-attention, then feed-forward, each with a residual and a
post-LayerNorm) that `serve_encoder` knows how to run faster."""


def reads_first_token_only(model: Any, *, task: str, pooling: str = "mean") -> bool:
    """Whether the task reads only the first token's final state: a [CLS] classifier, zero-shot's NLI
    classifier, a CLS-pooled embedding (which models do is listed per task in `bertq.infer_tasks`)."""
    return get_infer_task(task).reads_first_token_only(type(model).__name__, pooling=pooling)


def serve_encoder(model: Any, *, task: str, pooling: str = "mean") -> int:
    """Replace each BERT-layout encoder layer of an eval-mode model by a `ServingLayer`: the same
    arithmetic in fewer passes over memory, and, when the task reads only the first token
    (`reads_first_token_only`), a last layer that computes that row alone. Call it after the model has
    its precision and device. Returns how many layers were replaced (0: the model is left as it was,
    e.g. another family, a decoder, or attention kernels other than eager/sdpa)."""
    config = model.config
    if getattr(config, "is_decoder", False) or getattr(config, "_attn_implementation", None) not in ("eager", "sdpa"):
        return 0
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if not layers or not all(ServingLayer.fits(layer) for layer in layers):
        return 0
    first_token = reads_first_token_only(model, task=task, pooling=pooling)
    for index, layer in enumerate(layers):
        layers[index] = ServingLayer(layer, first_token_only=first_token and index == len(layers) - 1)
    return len(layers)


class ServingLayer(torch.nn.Module):
    """A BERT-layout encoder layer for inference, the same arithmetic as the layer it wraps (outputs
    equal up to float rounding; tests compare them), in fewer passes over memory:

    - query, key and value in one matrix product (their weights concatenated once; the layer's own
      Linear weights become views of it, so no memory is duplicated);
    - each residual add done by the matrix product itself (`(residual + bias).addmm_(x, W.T)`), not a
      product, a bias copy and an add;
    - the exact GELU in place;
    - with `first_token_only`, only the first position's query, attention output and feed-forward:
      10/12 of the layer's matrix work saved when that is all the task reads. Its output is then
      [batch, 1, hidden].

    Measured on the 2-core CPU (MiniLM-L6 classifier, the forward passes over 4,000 Reddit comments
    in bertq's sorted batches, fp32, five alternating rounds, medians): 741/s against 590/s for the
    model's own layers.
    Weights that are not plain Linear layers (int8) or autocast (fp16 on a CPU) run the wrapped
    modules instead, with the first-token saving still made."""

    def __init__(self, layer: torch.nn.Module, *, first_token_only: bool):
        super().__init__()
        self.layer = layer
        self.first_token_only = first_token_only
        self.train(False)
        attention = layer.attention.self
        self.heads, self.head_size, self.scaling = (
            attention.num_attention_heads,
            attention.attention_head_size,
            attention.scaling,
        )
        linears = (
            attention.query,
            attention.key,
            attention.value,
            layer.attention.output.dense,
            layer.intermediate.dense,
            layer.output.dense,
        )
        self.fused = all(type(linear) is torch.nn.Linear and linear.bias is not None for linear in linears)
        act = layer.intermediate.intermediate_act_fn
        self.exact_gelu = getattr(act, "act", None) is torch.nn.functional.gelu
        if self.fused:  # one [3H, H] weight; query, key and value keep views of it
            with torch.no_grad():
                weight = torch.cat([attention.query.weight, attention.key.weight, attention.value.weight])
                bias = torch.cat([attention.query.bias, attention.key.bias, attention.value.bias])
            width = attention.query.weight.shape[0]
            for part, linear in enumerate((attention.query, attention.key, attention.value)):
                linear.weight = torch.nn.Parameter(weight[part * width : (part + 1) * width], requires_grad=False)
                linear.bias = torch.nn.Parameter(bias[part * width : (part + 1) * width], requires_grad=False)
            self.qkv_weight, self.qkv_bias, self.width = weight, bias, width

    @staticmethod
    def fits(layer: torch.nn.Module) -> bool:
        """A BERT-layout layer with no cross-attention and the parts this class reads."""
        attention = getattr(getattr(layer, "attention", None), "self", None)
        needed = ("query", "key", "value", "num_attention_heads", "attention_head_size", "scaling")
        return (
            type(layer).__name__ in ENCODER_LAYERS
            and not getattr(layer, "is_decoder", False)
            and not getattr(layer, "add_cross_attention", False)
            and attention is not None
            and all(hasattr(attention, name) for name in needed)
            and abs(attention.scaling - attention.attention_head_size**-0.5) < 1e-9
            and hasattr(layer.attention, "output")
            and hasattr(layer, "intermediate")
            and hasattr(layer, "output")
            and callable(getattr(layer.intermediate, "intermediate_act_fn", None))
        )

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        if self.training:
            raise RuntimeError("ServingLayer is for inference only; train the model it was built from")
        layer = self.layer
        batch, length, width = hidden_states.shape
        rows = hidden_states.reshape(batch * length, width)
        fused = self.fused and not torch.is_autocast_enabled(hidden_states.device.type)
        first = hidden_states[:, 0] if self.first_token_only else None
        query, key, value = self._query_key_value(rows, first, fused)
        queries = 1 if first is not None else length
        if attention_mask is not None and first is not None and attention_mask.dim() == 4:
            attention_mask = attention_mask[:, :, :1, :]
        # eager's additive mask and sdpa's boolean one (True: attend) mean the same to sdpa
        context = torch.nn.functional.scaled_dot_product_attention(
            self._split_heads(query, batch),
            self._split_heads(key, batch),
            self._split_heads(value, batch),
            attn_mask=attention_mask,
            scale=self.scaling,
        )
        context = context.transpose(1, 2).reshape(batch * queries, self.heads * self.head_size)
        residual = rows if first is None else first
        attended = layer.attention.output.LayerNorm(
            self._dense_plus(layer.attention.output.dense, context, residual, fused)
        )
        if fused:
            inner = torch.addmm(layer.intermediate.dense.bias, attended, layer.intermediate.dense.weight.t())
            inner = torch.ops.aten.gelu_(inner) if self.exact_gelu else layer.intermediate.intermediate_act_fn(inner)
        else:
            inner = layer.intermediate(attended)
        output = layer.output.LayerNorm(self._dense_plus(layer.output.dense, inner, attended, fused))
        return output.view(batch, queries, width)

    def _split_heads(self, rows: torch.Tensor, batch: int) -> torch.Tensor:
        """[batch * positions, hidden] rows (strided views of a fused product are fine) as [batch, heads, positions, size]."""
        return rows.view(batch, -1, self.heads, self.head_size).transpose(1, 2)

    def _query_key_value(
        self, rows: torch.Tensor, first: torch.Tensor | None, fused: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not fused:
            attention = self.layer.attention.self
            return attention.query(rows if first is None else first), attention.key(rows), attention.value(rows)
        width = self.width
        if first is None:
            both = torch.addmm(self.qkv_bias, rows, self.qkv_weight.t())
            return both[:, :width], both[:, width : 2 * width], both[:, 2 * width :]
        key_value = torch.addmm(self.qkv_bias[width:], rows, self.qkv_weight[width:].t())
        query = torch.addmm(self.qkv_bias[:width], first, self.qkv_weight[:width].t())
        return query, key_value[:, :width], key_value[:, width:]

    @staticmethod
    def _dense_plus(dense: torch.nn.Module, x: torch.Tensor, residual: torch.Tensor, fused: bool) -> torch.Tensor:
        """dense(x) + residual; fused, the product adds itself into (residual + bias)."""
        if not fused:
            return dense(x) + residual
        return (residual + dense.bias).addmm_(x, dense.weight.t())
