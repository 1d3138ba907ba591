"""Reading and checking extractive question-answering data (SQuAD v1.1) with the standard library alone.

The CLI checks a file before anything is enqueued, and the worker reads it with the same code, so
what was validated is what is trained on. Two layouts are read: the official SQuAD JSON (`.json`)
and one question per line (`.jsonl`, as the Hugging Face `squad` dataset exports it).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertq.datafiles import DataFileError, read_rows


@dataclass(frozen=True)
class QAExample:
    """One question about one context, with its gold answers."""

    id: str
    title: str
    """The article the context comes from; train/eval splits keep an article on one side."""
    context: str
    question: str
    answers: list[tuple[str, int]]
    """(answer text, character offset of its start in `context`), as many as the annotators gave."""


def read_squad(path: Path, *, require_answers: bool = True) -> list[QAExample]:
    """Every example of a SQuAD `.json` or `.jsonl` file; raises DataFileError naming the file, the
    example (or line) and the fix. `require_answers=False` admits questions without answers (data to
    predict on, not to train or evaluate with)."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        raw = _squad_json_examples(path)
    elif suffix == ".jsonl":
        raw = _jsonl_examples(path)
    else:
        raise DataFileError(
            f"{path}: unknown question-answering format {suffix or '(no extension)'!r}; use .json "
            "(the official SQuAD v1.1 layout) or .jsonl (one question per line)"
        )
    examples: list[QAExample] = []
    first_seen: dict[str, str] = {}
    for where, fields in raw:
        example = _checked_example(where, fields, require_answers=require_answers)
        if example.id in first_seen:
            raise DataFileError(
                f"{where}: example id {example.id!r} was already used ({first_seen[example.id]}); "
                "every question needs its own id"
            )
        first_seen[example.id] = where
        examples.append(example)
    if not examples:
        raise DataFileError(f"{path}: no examples (no question in the file)")
    return examples


def split_by_article(
    examples: list[QAExample], *, eval_fraction: float, seed: int
) -> tuple[list[QAExample], list[QAExample]]:
    """(train, eval) with every question of an article on the same side, so that no context is seen
    in training and then scored in evaluation. Eval gets round(eval_fraction × titles) articles, at
    least one, and at least one is left for training; the same seed gives the same split."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be between 0 and 1 (exclusive), not {eval_fraction}")
    # Sorted first so that the split depends on the seed alone, not on the order of the file.
    titles = sorted({example.title for example in examples})
    if len(titles) < 2:
        raise ValueError(
            f"{len(titles)} article title(s) among {len(examples)} examples: a split by article needs at "
            "least 2; give the examples a `title`, or pass a separate eval file"
        )
    random.Random(seed).shuffle(titles)
    eval_count = min(max(round(eval_fraction * len(titles)), 1), len(titles) - 1)
    eval_titles = set(titles[:eval_count])
    train = [example for example in examples if example.title not in eval_titles]
    evaluation = [example for example in examples if example.title in eval_titles]
    return train, evaluation


# --------------------------------------------------------------------------------------------
# The two layouts, each reduced to (where, fields) pairs that one checker turns into examples.


def _squad_json_examples(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataFileError(
            f"{path}: bytes that are not UTF-8 ({error.reason} at byte {error.start}); re-encode the "
            "file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from error
    try:
        document = json.loads(text)
    except ValueError as error:
        raise DataFileError(f"{path}: not valid JSON ({error}); check the file is complete") from error
    layout = 'the SQuAD layout is {"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}'
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataFileError(f'{path}: no list under the key "data"; {layout}')
    for a, article in enumerate(document["data"]):
        where = f"{path}, data[{a}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DataFileError(f'{where}: an article needs a list under "paragraphs"; {layout}')
        title = article.get("title", "")
        for p, paragraph in enumerate(article["paragraphs"]):
            where = f"{path}, data[{a}].paragraphs[{p}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                raise DataFileError(f'{where}: a paragraph needs a list of questions under "qas"; {layout}')
            for q, qa in enumerate(paragraph["qas"]):
                if not isinstance(qa, dict):
                    raise DataFileError(f"{where}.qas[{q}]: a question must be a JSON object; {layout}")
                # Name the question by its id where it has one: that is what a reader can search for.
                named = f"{path}, example {qa['id']}" if qa.get("id") else f"{where}.qas[{q}]"
                yield named, {**qa, "title": title, "context": paragraph.get("context")}


def _jsonl_examples(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, row in read_rows(path):
        name = row.get("id")
        yield (f"{path}, line {number} (example {name})" if name else f"{path}, line {number}"), row


def _checked_example(where: str, fields: dict[str, Any], *, require_answers: bool) -> QAExample:
    name = fields.get("id")
    if isinstance(name, bool) or not isinstance(name, (str, int)) or not str(name).strip():
        raise DataFileError(f'{where}: no "id"; give every question a unique id')
    title = _string(where, fields, "title", default="")
    context = _string(where, fields, "context")
    question = _string(where, fields, "question")
    if not context.strip():
        raise DataFileError(f"{where}: the context is empty; every question needs the text it is about")
    if not question.strip():
        raise DataFileError(f"{where}: the question is empty; drop the example or write its question")
    answers = _answers(where, fields.get("answers", []))
    if require_answers and not answers:
        raise DataFileError(
            f"{where}: example {name} has no answers; training and evaluation need at least one "
            "(text, answer_start) per question"
        )
    for text, start in answers:
        found = context[start : start + len(text)]
        if found != text:
            elsewhere = context.find(text)
            hint = (
                f"the text occurs at offset {elsewhere}"
                if elsewhere >= 0
                else "the text does not occur in the context at all"
            )
            raise DataFileError(
                f"{where}: answer {text!r} for example {name} is not at offset {start} of its context "
                f"(found {found!r}); {hint}: fix answer_start (offsets count characters, not bytes)"
            )
    return QAExample(id=str(name), title=title, context=context, question=question, answers=answers)


def _string(where: str, fields: dict[str, Any], key: str, *, default: str | None = None) -> str:
    value = fields.get(key)
    if value is None and default is not None:
        return default
    if value is None:
        raise DataFileError(f'{where}: no "{key}"; every question needs its {key}')
    if not isinstance(value, str):
        raise DataFileError(f'{where}: "{key}" must be a string, not {type(value).__name__}')
    return value


def _answers(where: str, raw: Any) -> list[tuple[str, int]]:
    """(text, start) pairs from a list of {"text", "answer_start"} or the Hugging Face column layout
    {"text": [...], "answer_start": [...]}."""
    if isinstance(raw, dict):
        texts, starts = raw.get("text"), raw.get("answer_start")
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            raise DataFileError(
                f'{where}: "answers" as an object needs two lists of the same length, '
                '{"text": [...], "answer_start": [...]}'
            )
        pairs = list(zip(texts, starts, strict=True))
    elif isinstance(raw, list) and all(isinstance(answer, dict) for answer in raw):
        pairs = [(answer.get("text"), answer.get("answer_start")) for answer in raw]
    else:
        raise DataFileError(
            f'{where}: "answers" must be a list of {{"text", "answer_start"}} objects '
            'or {"text": [...], "answer_start": [...]}'
        )
    answers: list[tuple[str, int]] = []
    for text, start in pairs:
        if not isinstance(text, str) or not text:
            raise DataFileError(f'{where}: an answer has no "text"; every answer needs its text')
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise DataFileError(
                f"{where}: answer {text!r} has answer_start {start!r}; it must be the character offset "
                "(a whole number ≥ 0) where the answer starts in the context"
            )
        answers.append((text, start))
    return answers
