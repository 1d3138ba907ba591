"""Named-entity recognition: word tags onto sub-tokens for training, and entity-level scores back.

Tokenizers are passed in, already loaded; they must be fast (Rust) tokenizers, which provide
`word_ids()`. Byte-level BPE tokenizers (RoBERTa, GPT-2 style) must be loaded with
`add_prefix_space=True` to read pre-split words: see `needs_prefix_space`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

from bertq.conll import NerExample, to_iob2
from bertq.worker.textdata import IGNORE_INDEX

"""The label torch's cross-entropy loss skips (its default ignore_index), and the Trainer pads with."""


def align_labels(word_ids: list[int | None], word_label_ids: list[int]) -> list[int]:
    """One label per sub-token: the word's label on its first sub-token, IGNORE_INDEX elsewhere.

    Labelling only the first piece keeps one prediction per word, so scores count words, not pieces;
    special tokens ([CLS], [SEP], padding) have no word (None) and are ignored too.
    """
    labels: list[int] = []
    previous: int | None = None
    for word_id in word_ids:
        if word_id is None or word_id == previous:
            labels.append(IGNORE_INDEX)
        else:
            labels.append(word_label_ids[word_id])
        previous = word_id
    return labels


def _byte_level_pre_tokenizers(tokenizer: Any) -> list[dict[str, Any]]:
    """The ByteLevel steps of the tokenizer's pre-tokenizer (a Sequence may hold several)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre_tokenizer = getattr(backend, "pre_tokenizer", None)
    if pre_tokenizer is None:
        return []
    found: list[dict[str, Any]] = []
    pending: list[Any] = [json.loads(pre_tokenizer.__getstate__())]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if node.get("type") == "ByteLevel":
                found.append(node)
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def needs_prefix_space(tokenizer: Any) -> bool:
    """True for byte-level BPE tokenizers (RoBERTa, GPT-2 style), whatever their current setting.

    They mark a word start with a leading space ("Ġword"); given pre-split words without
    `add_prefix_space=True` they encode every word as if it continued the previous one, which is not
    what the model was pretrained on. Load them with
    `AutoTokenizer.from_pretrained(name, add_prefix_space=True)`.
    """
    return bool(_byte_level_pre_tokenizers(tokenizer))


def tokenize_and_align(
    examples: list[NerExample], tokenizer: Any, label2id: dict[str, int], *, max_length: int
) -> dict[str, list]:
    """Token ids (no padding: the collator pads each batch) and per-sub-token `labels`.

    Tags are converted to IOB2 first; every tag must be in `label2id` (check with
    `bertq.conll.check_tags` beforehand, which names the file and line).
    """
    byte_levels = _byte_level_pre_tokenizers(tokenizer)
    # transformers 5 no longer refuses pre-split words here, it silently encodes them badly.
    if byte_levels and not any(step.get("add_prefix_space") for step in byte_levels):
        raise ValueError(
            f"{type(tokenizer).__name__} is a byte-level BPE tokenizer loaded without add_prefix_space; "
            "load it with AutoTokenizer.from_pretrained(name, add_prefix_space=True) for NER"
        )
    encoded = tokenizer(
        [example.tokens for example in examples], is_split_into_words=True, truncation=True, max_length=max_length
    )
    labels = []
    for index, example in enumerate(examples):
        tags = to_iob2(example.tags)
        unknown = sorted(set(tags) - set(label2id))
        if unknown:
            raise ValueError(f"sentence at line {example.line}: tags {unknown} are not in label2id {list(label2id)}")
        labels.append(align_labels(encoded.word_ids(index), [label2id[tag] for tag in tags]))
    columns = {key: list(value) for key, value in encoded.items()}
    columns["labels"] = labels
    return columns


def logits_to_tags(
    logits: np.ndarray, label_ids: np.ndarray, id2label: dict[int, str]
) -> tuple[list[list[str]], list[list[str]]]:
    """(gold, predicted) tag sequences, one per sentence, at the positions whose gold label is kept.

    `logits` is (sentences, sub-tokens, labels) and `label_ids` (sentences, sub-tokens), as the
    Trainer hands them to compute_metrics, padded with IGNORE_INDEX.
    """
    predicted_ids = np.asarray(logits).argmax(axis=-1)
    gold: list[list[str]] = []
    predicted: list[list[str]] = []
    for gold_row, predicted_row in zip(np.asarray(label_ids), predicted_ids):
        kept = gold_row != IGNORE_INDEX
        gold.append([id2label[int(i)] for i in gold_row[kept]])
        predicted.append([id2label[int(i)] for i in predicted_row[kept]])
    return gold, predicted


def entity_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 as the conlleval script counts them, and token accuracy.

    An entity counts only if its type and both boundaries match. seqeval's default mode follows
    conlleval: a predicted I-X after O or another type starts an entity instead of being discarded.
    """
    if len(gold) != len(predicted) or any(len(g) != len(p) for g, p in zip(gold, predicted)):
        raise ValueError("gold and predicted must have the same number of sentences and of tags in each")
    if not any(gold):
        return {"entity_precision": 0.0, "entity_recall": 0.0, "entity_f1": 0.0, "token_accuracy": 0.0}
    # zero_division=0: no predicted (or no gold) entity scores 0 instead of warning.
    return {
        "entity_precision": float(precision_score(gold, predicted, zero_division=0)),
        "entity_recall": float(recall_score(gold, predicted, zero_division=0)),
        "entity_f1": float(f1_score(gold, predicted, zero_division=0)),
        "token_accuracy": float(accuracy_score(gold, predicted)),
    }
