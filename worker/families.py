"""The three task families, each the same shape: read examples, load a model with the right head,
build training features, and build an evaluation set that scores the model's outputs.

Both the fine-tune (per-epoch evaluation) and the evaluate job score through `EvalSet`, so the
numbers they report for the same checkpoint and data are the same numbers.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertq import conll, datafiles, squad
from bertq.errors import BertqError
from bertq.worker import classification, ner, qa
from bertq.worker.textdata import load_labelled


@dataclass
class EvalSet:
    """Model inputs for every example of an evaluation set, and how to score the outputs."""

    features: dict[str, list]
    """Token-id lists, one row per model input (a QA example may have several windows)."""
    num_examples: int
    outputs: tuple[str, ...]
    """The model outputs that `score` needs (logits, or start/end logits)."""
    score: Callable[[list[dict[str, np.ndarray]]], dict[str, float]]
    """Task metrics from the outputs of every row of `features`, in order."""
    example_features: Callable[[int], dict[str, list]]
    """Tokenise example i alone, as a server would for one request (used to time latency)."""


def read_examples(family: str, source: str, *, spec: Any, side: str) -> list[Any]:
    """The examples of one side ('train' or 'eval'), applying the article split when there is one."""
    if family == "classification":
        data = load_labelled(source, spec.text_column, spec.label_column)
        return list(zip(data.texts, data.labels))
    if family == "ner":
        return conll.read_ner(Path(source))
    examples = squad.read_squad(Path(source))
    if spec.split_by == "article":
        train, evaluation = squad.split_by_article(examples, eval_fraction=spec.eval_fraction, seed=spec.seed)
        return train if side == "train" else evaluation
    return examples


def model_class(family: str) -> Any:
    import transformers

    return getattr(
        transformers,
        {"classification": "AutoModelForSequenceClassification", "ner": "AutoModelForTokenClassification",
         "qa": "AutoModelForQuestionAnswering"}[family],
    )


def data_collator(family: str, tokenizer: Any) -> Any:
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    return DataCollatorForTokenClassification(tokenizer) if family == "ner" else DataCollatorWithPadding(tokenizer)


def labels_for(family: str, examples: list[Any], spec_labels: list[str] | None) -> list[str] | None:
    if family == "qa":
        return None
    if spec_labels:
        return list(spec_labels)
    if family == "ner":
        return conll.label_list(examples)
    return sorted({label for _, label in examples}, key=datafiles.label_sort_key)


def trained_labels(model_folder: str, config: Any, family: str) -> list[str] | None:
    """Label values in class-id order for a trained checkpoint: bertq's spec beside the weights if it
    is there, else the names in the model's config."""
    spec_file = Path(model_folder) / "bertq_spec.json"
    if spec_file.is_file():
        labels = json.loads(spec_file.read_text()).get("labels")
        if labels:
            return labels
    if family == "qa":
        return None
    return [config.id2label[i] for i in range(config.num_labels)]


def train_dataset(family: str, examples: list[Any], tokenizer: Any, spec: Any, labels: list[str] | None) -> Any:
    from datasets import Dataset

    if family == "classification":
        data = datafiles.LabelledData([t for t, _ in examples], [y for _, y in examples])
        index = {label: i for i, label in enumerate(labels or [])}
        encoded = tokenizer(data.texts, truncation=True, max_length=spec.max_length)
        columns = {key: list(value) for key, value in encoded.items()}
        columns["labels"] = [index[label] for label in data.labels]
    elif family == "ner":
        columns = ner.tokenize_and_align(examples, tokenizer, {t: i for i, t in enumerate(labels or [])}, max_length=spec.max_length)
    else:
        columns = qa.prepare_train_features(examples, tokenizer, max_length=spec.max_length, stride=spec.stride)
    return Dataset.from_dict(columns)


def eval_set(family: str, examples: list[Any], tokenizer: Any, spec: Any, labels: list[str] | None) -> EvalSet:
    if family == "classification":
        return _classification_eval(examples, tokenizer, spec, labels or [])
    if family == "ner":
        return _ner_eval(examples, tokenizer, spec, labels or [])
    return _qa_eval(examples, tokenizer, spec)


def _classification_eval(examples: list[tuple[str, str]], tokenizer: Any, spec: Any, labels: list[str]) -> EvalSet:
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({y for _, y in examples} - set(index))
    if unknown:
        raise BertqError(f"evaluation labels {unknown[:5]} are not among the model's labels {labels[:10]}")
    gold = np.array([index[y] for _, y in examples])
    texts = [t for t, _ in examples]

    def encode(batch: list[str]) -> dict[str, list]:
        return {k: list(v) for k, v in tokenizer(batch, truncation=True, max_length=spec.max_length).items()}

    def score(outputs: list[dict[str, np.ndarray]]) -> dict[str, float]:
        predicted = np.array([int(np.argmax(o["logits"])) for o in outputs])
        return classification.accuracy_and_f1(predicted, gold, len(labels))

    return EvalSet(encode(texts), len(texts), ("logits",), score, lambda i: encode([texts[i]]))


def _ner_eval(examples: list[conll.NerExample], tokenizer: Any, spec: Any, labels: list[str]) -> EvalSet:
    label2id = {t: i for i, t in enumerate(labels)}
    id2label = dict(enumerate(labels))
    features = ner.tokenize_and_align(examples, tokenizer, label2id, max_length=spec.max_length)

    def score(outputs: list[dict[str, np.ndarray]]) -> dict[str, float]:
        gold_tags: list[list[str]] = []
        predicted_tags: list[list[str]] = []
        for output, label_ids in zip(outputs, features["labels"]):
            gold, predicted = ner.logits_to_tags(output["logits"][None], np.array([label_ids]), id2label)
            gold_tags += gold
            predicted_tags += predicted
        return ner.entity_metrics(gold_tags, predicted_tags)

    def one(i: int) -> dict[str, list]:
        return ner.tokenize_and_align([examples[i]], tokenizer, label2id, max_length=spec.max_length)

    return EvalSet(features, len(examples), ("logits",), score, one)


def _qa_eval(examples: list[squad.QAExample], tokenizer: Any, spec: Any) -> EvalSet:
    features = qa.prepare_eval_features(examples, tokenizer, max_length=spec.max_length, stride=spec.stride)

    def score(outputs: list[dict[str, np.ndarray]]) -> dict[str, float]:
        width = max(len(o["start_logits"]) for o in outputs)
        start = np.full((len(outputs), width), -1e9, dtype=np.float32)
        end = np.full((len(outputs), width), -1e9, dtype=np.float32)
        for row, output in enumerate(outputs):
            start[row, : len(output["start_logits"])] = output["start_logits"]
            end[row, : len(output["end_logits"])] = output["end_logits"]
        predictions = qa.postprocess_predictions(
            examples, features, start, end, max_answer_length=spec.max_answer_length
        )
        return qa.squad_metrics(predictions, examples)

    def one(i: int) -> dict[str, list]:
        return qa.prepare_eval_features([examples[i]], tokenizer, max_length=spec.max_length, stride=spec.stride)

    return EvalSet(features, len(examples), ("start_logits", "end_logits"), score, one)


def latency_sample(num_examples: int, count: int, seed: int) -> list[int]:
    """Which real examples are timed one by one: a seeded sample, the same for every precision."""
    indices = list(range(num_examples))
    random.Random(seed).shuffle(indices)
    return indices[:count]
