"""Bulk prediction: texts in, one result dict per text out, as fast as the device allows.

Tokenise everything ahead, sort by length, batch by a token budget (no padding beyond each batch's
longest input), run under `torch.inference_mode` in the chosen precision, and turn each batch's
outputs into results at once (so nothing per-token is kept for a whole shard). A CUDA out-of-memory
error halves the token budget and retries the batch.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertq.infer_tasks import get_infer_task
from bertq.models import accepted_length
from bertq.sharding import Text
from bertq.tasks import DEFAULT_TOKEN_BUDGET
from bertq.worker.inference import padded_length, prepare_model, run_batches, serve_encoder

log = logging.getLogger("bertq.predict")

TOKENIZE_CHUNK = 4096
"""Texts tokenised (and length-sorted into batches) at a time when tokenising beside the model."""

CPU_ATTENTION = "sdpa"
"""Attention kernels for CPU inference. Measured on the 2-core AMX CPU, six alternating runs of 2,000
comments each (the machine's speed drifts run to run, single runs misled an earlier choice of eager),
with the first-token last layer: fp32 median 752 sdpa vs 712/s eager, 789 vs 755/s in a second
session; bf16 1687 vs 1574/s. The serving layers (`serve_encoder`) run sdpa whatever this says; it
still picks the kernels of the models they do not cover."""


@dataclass
class Predictor:
    """A loaded model and tokenizer, and how to turn its outputs into results for one task."""

    task: str
    model: Any
    tokenizer: Any
    device: str
    precision: str
    max_length: int = 512
    all_scores: bool = False
    normalize: bool = False
    labels: list[str] | None = None
    """zero-shot: the candidate labels."""
    question: str | None = None
    """qa: the question asked of every text."""
    hypothesis: str = "This example is {}."
    pooling: str = "mean"
    batch_size_cap: int = 128
    """At most this many inputs a batch: on a CPU, batches of 64-128 short inputs were fastest here."""
    tokenize_ahead: bool | None = None
    """classify, score and embed: tokenise the next chunk in a thread while the model runs. None:
    BERTQ_TOKENIZE_AHEAD (1 or 0) if set, else on a GPU only. On this 2-core CPU the thread took
    cores from the model (bench/tokenize_bench.py: 242/s ahead against 265/s inline, median of 4
    alternating rounds); on a GPU the model runs on the device while the CPU tokenises."""
    batch_invariant: bool = False
    """Pad each input to a length of its own and batch by it (`run_batches` with a length cap), so a
    text's outputs do not depend on the texts run with it. Bulk inference sets it: a result-cache
    run of the misses alone must write what a full run writes."""
    tokens: int = 0
    """Real (not padding) tokens run so far."""
    padded_tokens: int = 0
    """Tokens run so far with padding: batch size x longest input, per batch (tokens / padded_tokens
    is the padding efficiency)."""

    def __post_init__(self) -> None:
        if self.tokenize_ahead is None:
            setting = os.environ.get("BERTQ_TOKENIZE_AHEAD")
            self.tokenize_ahead = setting != "0" if setting is not None else self.device == "cuda"

    def predict(
        self,
        texts: list[Text],
        *,
        token_budget: int = DEFAULT_TOKEN_BUDGET["cpu"],
        on_batch: Callable[[int], None] | None = None,
    ) -> list[dict[str, Any]]:
        """One result per text, by the method `PREDICT_METHODS` names for this predictor's task."""
        method = getattr(self, PREDICT_METHODS[self.task])
        return method(texts, token_budget=token_budget, on_batch=on_batch)

    def _classify(
        self, texts: list[Text], *, token_budget: int, on_batch: Callable[[int], None] | None
    ) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = [{}] * len(texts)

        def consume(indices: list[int], output: Any, batch: dict[str, torch.Tensor]) -> None:
            # one softmax per batch, not per row: rows are many and small
            for index, result in zip(indices, self._classifications(output.logits)):
                results[index] = result

        self._run_texts(texts, consume, token_budget=token_budget, on_batch=on_batch)
        return results

    def _score(
        self, texts: list[Text], *, token_budget: int, on_batch: Callable[[int], None] | None
    ) -> list[dict[str, Any]]:
        """A regression head's number per text or pair (STS-B: similarity, 0 to 5)."""
        results: list[dict[str, Any]] = [{}] * len(texts)

        def consume(indices: list[int], output: Any, batch: dict[str, torch.Tensor]) -> None:
            values = output.logits[:, 0].float().cpu().numpy()  # one copy a batch
            for row, index in enumerate(indices):
                results[index] = {"score": round(float(values[row]), 6)}

        self._run_texts(texts, consume, token_budget=token_budget, on_batch=on_batch)
        return results

    def _tokenize(self, texts: list[Text]) -> Any:
        """Texts, or (text, second text) pairs as one input each; a pair too long loses tokens from its
        longer side first (as in training)."""
        if texts and isinstance(texts[0], tuple):
            firsts, seconds = zip(*texts)
            return self.tokenizer(list(firsts), list(seconds), truncation="longest_first", max_length=self.max_length)
        return self.tokenizer(texts, truncation=True, max_length=self.max_length)

    def _embed(
        self, texts: list[Text], *, token_budget: int, on_batch: Callable[[int], None] | None
    ) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = [{}] * len(texts)

        def consume(indices: list[int], output: Any, batch: dict[str, torch.Tensor]) -> None:
            vectors = self._pooled(output.last_hidden_state, batch["attention_mask"])  # one copy a batch
            for row, index in enumerate(indices):
                results[index] = {"embedding": [round(float(x), 6) for x in vectors[row]]}

        self._run_texts(texts, consume, token_budget=token_budget, on_batch=on_batch)
        return results

    def _run_texts(
        self,
        texts: list[Text],
        consume: Callable[[list[int], Any, dict[str, torch.Tensor]], None],
        *,
        token_budget: int,
        on_batch: Callable[[int], None] | None,
    ) -> None:
        """Tokenise and run `texts`. With `tokenize_ahead`, a thread tokenises the next chunk of
        TOKENIZE_CHUNK texts while the model runs this one (a bounded queue of two chunks; each chunk
        length-sorted into batches), so the model does not wait for the tokenizer between chunks;
        else all texts are tokenised first."""
        if not self.tokenize_ahead or len(texts) <= TOKENIZE_CHUNK:
            self._run(self._features(self._tokenize(texts)), consume, token_budget=token_budget, on_batch=on_batch)
            return
        chunks: queue.Queue[tuple[int, dict[str, list]] | BaseException | None] = queue.Queue(maxsize=2)
        stop = threading.Event()

        def produce() -> None:
            try:
                for start in range(0, len(texts), TOKENIZE_CHUNK):
                    if stop.is_set():
                        return
                    chunks.put((start, self._features(self._tokenize(texts[start : start + TOKENIZE_CHUNK]))))
                chunks.put(None)
            except BaseException as error:  # raised again in the consuming thread
                chunks.put(error)

        producer = threading.Thread(target=produce, name="bertq-tokenize", daemon=True)
        producer.start()
        try:
            while (item := chunks.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                offset, features = item

                def shifted(
                    indices: list[int], output: Any, batch: dict[str, torch.Tensor], offset: int = offset
                ) -> None:
                    consume([offset + i for i in indices], output, batch)

                self._run(features, shifted, token_budget=token_budget, on_batch=on_batch)
        finally:
            stop.set()
            while producer.is_alive():  # unblock a producer waiting on a full queue, then let it end
                try:
                    chunks.get_nowait()
                except queue.Empty:
                    producer.join(timeout=0.1)

    def _ner(
        self, texts: list[str], *, token_budget: int, on_batch: Callable[[int], None] | None
    ) -> list[dict[str, Any]]:
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        features = self._features(encoded)
        results: list[dict[str, Any]] = [{}] * len(texts)

        def consume(indices: list[int], output: Any, batch: dict[str, torch.Tensor]) -> None:
            # One softmax and one device-to-host copy a batch, not one a row.
            probabilities = torch.softmax(output.logits.float(), dim=-1).cpu().numpy()
            for row, index in enumerate(indices):
                rows = probabilities[row, : len(offsets[index])]
                results[index] = {"entities": self._entities(texts[index], rows, offsets[index])}

        self._run(features, consume, token_budget=token_budget, on_batch=on_batch)
        return results

    @staticmethod
    def _features(encoded: Any) -> dict[str, list]:
        return {k: list(v) for k, v in encoded.items() if k != "offset_mapping"}

    # -- the batch loop ---------------------------------------------------------------------

    def _run(
        self,
        features: dict[str, list],
        consume: Callable[[list[int], Any, dict[str, torch.Tensor]], None],
        *,
        token_budget: int,
        on_batch: Callable[[int], None] | None,
    ) -> None:
        lengths = [len(ids) for ids in features["input_ids"]]

        def consume_and_count(indices: list[int], output: Any, batch: dict[str, torch.Tensor]) -> None:
            consume(indices, output, batch)
            self.tokens += sum(lengths[i] for i in indices)
            longest = max(lengths[i] for i in indices)
            self.padded_tokens += len(indices) * (
                padded_length(longest, self.max_length) if self.batch_invariant else longest
            )
            if on_batch is not None:
                on_batch(len(indices))

        run_batches(
            self.model,
            features,
            lengths,
            consume_and_count,
            pad_id=self.tokenizer.pad_token_id or 0,
            device=self.device,
            precision=self.precision,
            batch_size=self.batch_size_cap,
            max_tokens=token_budget,
            length_cap=self.max_length if self.batch_invariant else None,
        )

    # -- per-task results -------------------------------------------------------------------

    def _label(self, index: int) -> str:
        return str(self.model.config.id2label.get(index, index))

    def _classifications(self, logits: torch.Tensor) -> list[dict[str, Any]]:
        probabilities = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        best = probabilities.argmax(axis=-1)
        names = [self._label(i) for i in range(probabilities.shape[-1])]
        results = []
        for row, choice in zip(probabilities, best.tolist()):
            result: dict[str, Any] = {"label": names[choice], "score": round(float(row[choice]), 6)}
            if self.all_scores:
                result["scores"] = {name: round(float(p), 6) for name, p in zip(names, row)}
            results.append(result)
        return results

    def _pooled(self, hidden: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        """A batch's sentence vectors ([batch, hidden]), pooled on the device, copied to the host once."""
        hidden = hidden.float()
        if self.pooling == "cls":
            vectors = hidden[:, 0]
        else:  # mean over real tokens, as sentence-transformers models were trained
            weights = mask.unsqueeze(-1).float()
            vectors = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return vectors.cpu().numpy()

    def _entities(self, text: str, probabilities: np.ndarray, offsets: list[tuple[int, int]]) -> list[dict[str, Any]]:
        """Token predictions (a row's softmax, on the host) merged into entity spans with character
        offsets into `text`."""
        entities: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None
        for position, (start, end) in enumerate(offsets[: len(probabilities)]):
            if start == end:  # special token
                continue
            best = int(np.argmax(probabilities[position]))
            tag = self._label(best)
            score = float(probabilities[position, best])
            prefix, _, kind = tag.partition("-")
            continues = current is not None and kind == current["label"] and (prefix == "I" or start == current["end"])
            if tag == "O" or not kind:
                current = None
            elif continues and current is not None:
                current["end"] = end
                current["scores"].append(score)
            else:
                current = {"label": kind, "start": start, "end": end, "scores": [score]}
                entities.append(current)
        return [
            {
                "text": text[e["start"] : e["end"]],
                "label": e["label"],
                "start": e["start"],
                "end": e["end"],
                "score": round(float(np.mean(e["scores"])), 6),
            }
            for e in entities
        ]

    def _zero_shot(
        self, texts: list[str], *, token_budget: int, on_batch: Callable[[int], None] | None
    ) -> list[dict[str, Any]]:
        """NLI: each (text, "This example is {label}.") pair; labels ranked by entailment."""
        labels = self.labels or []
        entail = _entailment_index(self.model.config)
        premises = [t for t in texts for _ in labels]
        hypotheses = [self.hypothesis.format(label) for _ in texts for label in labels]
        encoded = self.tokenizer(premises, hypotheses, truncation="only_first", max_length=self.max_length)
        features = {k: list(v) for k, v in encoded.items()}
        scores = np.zeros((len(texts), len(labels)), dtype=np.float32)

        def consume(indices: list[int], output: Any, batch: dict[str, torch.Tensor]) -> None:
            column = output.logits[:, entail].float().cpu().numpy()  # one copy a batch
            for row, index in enumerate(indices):
                scores[index // len(labels), index % len(labels)] = column[row]

        self._run(features, consume, token_budget=token_budget, on_batch=None)
        if on_batch is not None:
            on_batch(len(texts))
        results = []
        for row in scores:
            probabilities = np.exp(row - row.max())
            probabilities /= probabilities.sum()
            order = np.argsort(-probabilities)
            results.append(
                {"labels": [labels[i] for i in order], "scores": [round(float(probabilities[i]), 6) for i in order]}
            )
        return results

    def _qa(
        self, texts: list[Text], *, token_budget: int, on_batch: Callable[[int], None] | None
    ) -> list[dict[str, Any]]:
        from bertq.squad import QAExample
        from bertq.worker.qa import predicted_spans, prepare_eval_features

        # A record's text is its context, or (context, its own question) with --question-column.
        examples = [
            QAExample(id=str(i), title="", context=t, question=self.question or "", answers=[])
            if isinstance(t, str)
            else QAExample(id=str(i), title="", context=t[0], question=t[1], answers=[])
            for i, t in enumerate(texts)
        ]
        features = prepare_eval_features(
            examples, self.tokenizer, max_length=self.max_length, stride=min(128, self.max_length // 4)
        )
        width = max(len(ids) for ids in features["input_ids"])
        start = np.full((len(features["input_ids"]), width), -1e9, dtype=np.float32)
        end = np.full_like(start, -1e9)

        def consume(indices: list[int], output: Any, batch: dict[str, torch.Tensor]) -> None:
            starts = output.start_logits.float().cpu().numpy()  # one copy a batch, not one a row
            ends = output.end_logits.float().cpu().numpy()
            for row, index in enumerate(indices):
                length = len(features["input_ids"][index])
                start[index, :length] = starts[row, :length]
                end[index, :length] = ends[row, :length]

        model_inputs = {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        self._run(model_inputs, consume, token_budget=token_budget, on_batch=None)
        if on_batch is not None:
            on_batch(len(texts))
        spans = predicted_spans(examples, features, start, end)
        # The predicted span's own offsets (not the first place its text occurs), and its score.
        return [
            {"answer": span.text, "start": span.start, "end": span.end, "score": round(span.score, 6)}
            for span in (spans[str(i)] for i in range(len(texts)))
        ]


PREDICT_METHODS = {
    "classify": "_classify",
    "score": "_score",
    "embed": "_embed",
    "ner": "_ner",
    "zero-shot": "_zero_shot",
    "qa": "_qa",
}
"""The Predictor method that answers each inference task (bertq.infer_tasks): a new task is one row
there, one method and one row here."""

ANSWER_OF: dict[str, Callable[[Any], Any]] = {
    "score": lambda value: round(value, 1),  # a number agrees to its first decimal (STS-B's 0-5 scale)
    "ner": lambda entities: [(e["label"], e["start"], e["end"]) for e in entities],
    "zero-shot": lambda ranked: ranked[0],
}
"""How two results of a task are compared across precisions, where not by their result key as is."""


def _entailment_index(config: Any) -> int:
    for index, name in config.id2label.items():
        if str(name).lower().startswith("entail"):
            return int(index)
    raise ValueError(
        f"zero-shot needs an NLI model whose labels include 'entailment'; this one has {list(config.id2label.values())}"
    )


def pooling_of(model_folder: str) -> str:
    """How a sentence-transformers model pools (its 1_Pooling/config.json), else mean pooling."""
    config = Path(model_folder) / "1_Pooling" / "config.json"
    if config.is_file():
        settings = json.loads(config.read_text())
        if settings.get("pooling_mode_cls_token"):
            return "cls"
    return "mean"


def cpu_has_fast_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def load_predictor(location: str, task: str, *, device: str, precision: str, **options: Any) -> Predictor:
    from transformers import AutoModel

    from bertq.worker.families import worker_family
    from bertq.worker.loading import load_tokenizer, load_with

    head = get_infer_task(task).head
    tokenizer = load_tokenizer(location, family=head.name if head else None)
    auto_class = worker_family(head.name).model_class() if head else AutoModel
    try:
        model = load_with(auto_class, location, **({"attn_implementation": CPU_ATTENTION} if device == "cpu" else {}))
    except ValueError as error:  # DeBERTa-v2 and others have only their own attention: they run it
        if "attention implementation" not in str(error):
            raise
        model = load_with(auto_class, location)
    pooling = pooling_of(location)
    served = serve_model(model, task=task, precision=precision, device=device, pooling=pooling)
    options.setdefault("batch_size_cap", 2048 if device == "cuda" else 128)
    # The spec's max_length was clamped at submit only when the model was known then (not for a job
    # id still training): RoBERTa's 514 positions accept 512 tokens, a longer input indexes past them.
    longest = accepted_length(model.config.to_dict()) or 512
    options["max_length"] = min(
        options.get("max_length") or 512, longest, getattr(tokenizer, "model_max_length", 512) or 512
    )
    return Predictor(
        task=task, model=served, tokenizer=tokenizer, device=device, precision=precision, pooling=pooling, **options
    )


def serve_model(model: Any, *, task: str, precision: str, device: str, pooling: str = "mean") -> Any:
    """A loaded model made ready for bulk prediction: the precision and device, then the encoder's
    layers replaced by serving layers (`serve_encoder`: fused, and the last one computing only the
    first token where the task reads nothing else)."""
    model = prepare_model(model, precision=precision, device=device)
    replaced = serve_encoder(model, task=task, pooling=pooling)
    if replaced:
        first = getattr(model.base_model.encoder.layer[-1], "first_token_only", False)
        log.info(
            "%s: %d encoder layers run fused%s",
            type(model).__name__,
            replaced,
            ", the last one for the first token only (all the task reads)" if first else "",
        )
    return model


def agreement(task: str, reference: list[dict[str, Any]], candidate: list[dict[str, Any]]) -> float:
    """How often a lower precision gives the same answer as fp32 (embeddings: the lowest cosine)."""
    if not reference:
        return 1.0
    infer_task = get_infer_task(task)
    key = infer_task.result_key
    if infer_task.vectors:
        cosines = []
        for a, b in zip(reference, candidate):
            x, y = np.array(a[key]), np.array(b[key])
            cosines.append(float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12)))
        return min(cosines)

    def answer(result: dict[str, Any]) -> Any:
        return ANSWER_OF.get(task, lambda value: value)(result[key])

    return float(np.mean([answer(a) == answer(b) for a, b in zip(reference, candidate)]))
