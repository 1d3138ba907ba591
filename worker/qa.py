"""Extractive question answering (SQuAD v1.1): windows of tokens, answer spans back to text, and the
official metrics, with numpy alone (the tokenizer is passed in).

A context longer than the model accepts is cut into overlapping windows, each preceded by the
question; training labels every window, and prediction picks the best span over all of them.
Tokenizers are assumed to pad on the right and to put the question first (every BERT-family one).
"""

from __future__ import annotations

import re
import string
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertq.squad import QAExample

PUNCTUATION = frozenset(string.punctuation)
"""ASCII punctuation only, as the official script removes: a curly quote or an en dash is kept."""

CLS_INDEX = 0
"""Where an answer that is not (wholly) in a window points: the first token, the SQuAD convention."""


def prepare_train_features(
    examples: list[QAExample], tokenizer: Any, *, max_length: int = 384, stride: int = 128
) -> dict[str, list]:
    """Model inputs for every window, labelled with the token span of each example's first answer;
    a window that does not hold the whole answer (or an example without one) points at CLS."""
    encoded = _windows(examples, tokenizer, max_length=max_length, stride=stride)
    features = _model_inputs(encoded)
    features["start_positions"], features["end_positions"] = [], []
    for window, offsets in enumerate(encoded["offset_mapping"]):
        example = examples[encoded["overflow_to_sample_mapping"][window]]
        start, end = CLS_INDEX, CLS_INDEX
        if example.answers:
            text, start_char = example.answers[0]
            first, last = _context_token_range(encoded.sequence_ids(window))
            end_char = start_char + len(text)
            if offsets[first][0] <= start_char and end_char <= offsets[last][1]:
                # The first token that starts after the answer's start, minus one; likewise from the
                # end, so an answer that begins or ends inside a word still covers that word.
                start = first
                while start <= last and offsets[start][0] <= start_char:
                    start += 1
                start -= 1
                end = last
                while end >= first and offsets[end][1] >= end_char:
                    end -= 1
                end += 1
        features["start_positions"].append(start)
        features["end_positions"].append(end)
    return features


def prepare_eval_features(
    examples: list[QAExample], tokenizer: Any, *, max_length: int = 384, stride: int = 128
) -> dict[str, list]:
    """Model inputs for every window, with the id of its example and, for each token, its character
    span in the context (None for question and special tokens, which are never an answer)."""
    encoded = _windows(examples, tokenizer, max_length=max_length, stride=stride)
    features = _model_inputs(encoded)
    features["example_id"], features["offset_mapping"] = [], []
    for window, offsets in enumerate(encoded["offset_mapping"]):
        features["example_id"].append(examples[encoded["overflow_to_sample_mapping"][window]].id)
        sequence_ids = encoded.sequence_ids(window)
        features["offset_mapping"].append(
            [tuple(offset) if sequence_ids[i] == 1 else None for i, offset in enumerate(offsets)]
        )
    return features


@dataclass(frozen=True)
class Span:
    """The predicted answer of one example: its text, where it is in the context, and how sure."""

    text: str
    start: int | None
    """Character offset in the context where the answer begins; None when no span qualified."""
    end: int | None
    score: float
    """P(start) x P(end): the softmax of the start and end logits over the window's context tokens."""


def postprocess_predictions(
    examples: list[QAExample],
    features: dict[str, list],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, str]:
    """The answer text for each example id (see `predicted_spans`)."""
    spans = predicted_spans(
        examples, features, start_logits, end_logits, n_best=n_best, max_answer_length=max_answer_length
    )
    return {example_id: span.text for example_id, span in spans.items()}


def predicted_spans(
    examples: list[QAExample],
    features: dict[str, list],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, Span]:
    """The answer span of each example id: the span with the highest start + end logit over all of
    its windows, among the n_best starts and ends that lie in the context, in order and at most
    max_answer_length tokens long; an empty span where none qualifies."""
    if len(start_logits) != len(features["example_id"]) or len(end_logits) != len(start_logits):
        raise ValueError(
            f"{len(start_logits)} start and {len(end_logits)} end logit rows for "
            f"{len(features['example_id'])} windows; pass the model's outputs for every window, in order"
        )
    windows_of: dict[str, list[int]] = defaultdict(list)
    for window, example_id in enumerate(features["example_id"]):
        windows_of[example_id].append(window)
    predictions: dict[str, Span] = {}
    for example in examples:
        best_score, best = -np.inf, Span("", None, None, 0.0)
        for window in windows_of[example.id]:
            offsets = features["offset_mapping"][window]
            # Logits are padded to the batch's longest window: cut the padding off before ranking,
            # so that it cannot take places among the n_best.
            starts = np.asarray(start_logits[window])[: len(offsets)]
            ends = np.asarray(end_logits[window])[: len(offsets)]
            in_context = np.array([offset is not None for offset in offsets])
            start_p, end_p = _softmax(starts, in_context), _softmax(ends, in_context)
            for start in np.argsort(starts)[::-1][:n_best]:
                for end in np.argsort(ends)[::-1][:n_best]:
                    if offsets[start] is None or offsets[end] is None:  # question or special token
                        continue
                    if end < start or end - start + 1 > max_answer_length:
                        continue
                    score = float(starts[start] + ends[end])
                    if score > best_score:
                        best_score = score
                        first, last = offsets[start][0], offsets[end][1]
                        best = Span(example.context[first:last], first, last, float(start_p[start] * end_p[end]))
        predictions[example.id] = best
    return predictions


def _softmax(logits: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Softmax over the context's tokens (the question's and special tokens get probability 0)."""
    if not keep.any():
        return np.zeros(len(logits))
    kept = np.where(keep, logits.astype(np.float64), -np.inf)
    shifted = np.exp(kept - kept[keep].max())
    return shifted / shifted.sum()


def normalize_answer(text: str) -> str:
    """The official SQuAD v1.1 normalisation: lower case, no punctuation, no articles (a, an, the),
    single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_metrics(predictions: dict[str, str], examples: list[QAExample]) -> dict[str, float]:
    """Exact match and token F1 as fractions in [0, 1], each the best over an example's gold
    answers, averaged over the examples that have answers (as the official v1.1 script does, a
    missing prediction scores 0)."""
    scored = [example for example in examples if example.answers]
    if not scored:
        raise ValueError("no examples with gold answers to score")
    exact, f1 = 0.0, 0.0
    for example in scored:
        prediction = predictions.get(example.id, "")
        golds = [text for text, _ in example.answers]
        exact += max(float(normalize_answer(prediction) == normalize_answer(gold)) for gold in golds)
        f1 += max(_token_f1(prediction, gold) for gold in golds)
    return {"exact_match": exact / len(scored), "f1": f1 / len(scored)}


def _token_f1(prediction: str, gold: str) -> float:
    predicted_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    shared = sum((Counter(predicted_tokens) & Counter(gold_tokens)).values())
    if shared == 0:
        return 0.0
    precision = shared / len(predicted_tokens)
    recall = shared / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _windows(examples: list[QAExample], tokenizer: Any, *, max_length: int, stride: int) -> Any:
    """The tokenizer's BatchEncoding of (question, context) windows, with offsets and the example
    each window came from."""
    return tokenizer(
        # Some SQuAD questions begin with long runs of spaces that would only take room from the context.
        [example.question.lstrip() for example in examples],
        [example.context for example in examples],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )


def _model_inputs(encoded: Any) -> dict[str, list]:
    """What the model takes (input_ids, attention_mask and token_type_ids where the tokenizer makes
    them), without the offsets and window-to-example map that only labelling needs."""
    return {
        key: list(values)
        for key, values in encoded.items()
        if key not in {"offset_mapping", "overflow_to_sample_mapping"}
    }


def _context_token_range(sequence_ids: list[int | None]) -> tuple[int, int]:
    """First and last token index of the context (sequence 1) in a window."""
    first = sequence_ids.index(1)
    last = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
    return first, last
