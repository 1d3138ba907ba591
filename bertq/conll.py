"""Reading and checking named-entity data (CoNLL column files, JSONL) with the standard library alone.

The CLI checks NER files before anything is enqueued and the worker reads them with the same code, so
this module must never import torch, transformers, numpy or seqeval.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bertq.datafiles import DataFileError, _decoded_lines, read_rows
from bertq.formats import format_of

COLUMN_SUFFIXES = frozenset({".txt", ".conll", ".iob", ".bio"})
DOCUMENT_START = "-DOCSTART-"
"""CoNLL-2003 marks document boundaries with this token; it is not a sentence."""

TAG_PATTERN = re.compile(r"^(O|[BI]-\S+)$")
"""IOB1 or IOB2: `O`, or `B-`/`I-` followed by an entity type."""


@dataclass(frozen=True)
class NerExample:
    tokens: list[str]
    tags: list[str]
    line: int
    """The line of the file where the sentence starts, for error messages."""


def read_ner(path: Path) -> list[NerExample]:
    """Every sentence of a CoNLL column file or a JSONL file; raises DataFileError naming file and line."""
    suffix = path.suffix.lower()
    if suffix in COLUMN_SUFFIXES:
        examples = _read_columns(path)
    elif format_of(path) == "jsonl":
        examples = _read_jsonl(path)
    else:
        raise DataFileError(
            f"{path}: unknown NER data format {suffix or '(no extension)'!r}; use a CoNLL column file "
            "(.txt, .conll, .iob, .bio: token first, tag last, a blank line between sentences) or .jsonl "
            '(one {"tokens": [...], "tags": [...]} object per line)'
        )
    if not examples:
        raise DataFileError(f"{path}: no sentences (the file is empty or has only -DOCSTART- lines)")
    return examples


def _check_tag(path: Path, number: int, tag: object) -> None:
    if not isinstance(tag, str) or not TAG_PATTERN.match(tag):
        raise DataFileError(
            f"{path}, line {number}: tag {tag!r} is not O, B-TYPE or I-TYPE; NER data needs IOB1 or IOB2 "
            "tags (convert BIOES/BILOU tags such as S-PER or E-PER, and class numbers, to tag names)"
        )


def _read_columns(path: Path) -> list[NerExample]:
    examples: list[NerExample] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    expected_columns: int | None = None

    def end_sentence() -> None:
        nonlocal tokens, tags
        if tokens:
            examples.append(NerExample(tokens, tags, start))
        tokens, tags = [], []

    for number, line in _decoded_lines(path):
        columns = line.split()
        # A -DOCSTART- line ends a sentence even when no blank line precedes it.
        if not columns or columns[0] == DOCUMENT_START:
            end_sentence()
            continue
        if expected_columns is None:
            expected_columns = len(columns)
            if expected_columns < 2:
                raise DataFileError(
                    f"{path}, line {number}: 1 column; a CoNLL file needs the token in the first column "
                    "and the tag in the last, separated by whitespace"
                )
        elif len(columns) != expected_columns:
            raise DataFileError(
                f"{path}, line {number}: {len(columns)} columns where the first data line has "
                f"{expected_columns}; every line needs the same columns (token first, tag last). A token "
                "that contains a space must be joined or written as JSONL instead"
            )
        _check_tag(path, number, columns[-1])
        if not tokens:
            start = number
        tokens.append(columns[0])
        tags.append(columns[-1])
    end_sentence()
    return examples


def _read_jsonl(path: Path) -> list[NerExample]:
    examples: list[NerExample] = []
    for number, row in read_rows(path):  # one JSON object per line, with its line number
        tag_key = "tags" if "tags" in row else "ner_tags"
        if "tokens" not in row or tag_key not in row:
            raise DataFileError(
                f"{path}, line {number}: expected an object with a 'tokens' list and a 'tags' (or "
                "'ner_tags') list of the same length"
            )
        tokens, tags = row["tokens"], row[tag_key]
        if not isinstance(tokens, list) or not isinstance(tags, list) or not tokens:
            raise DataFileError(f"{path}, line {number}: 'tokens' and {tag_key!r} must be non-empty lists")
        if len(tokens) != len(tags):
            raise DataFileError(
                f"{path}, line {number}: {len(tokens)} tokens but {len(tags)} tags; every token needs exactly one tag"
            )
        # An empty token becomes no sub-token at all, and its tag would silently vanish.
        if not all(isinstance(token, str) and token.strip() for token in tokens):
            raise DataFileError(f"{path}, line {number}: every token must be a non-empty string")
        for tag in tags:
            _check_tag(path, number, tag)
        examples.append(NerExample(tokens, tags, number))
    return examples


def to_iob2(tags: list[str]) -> list[str]:
    """IOB2 tags: an entity that starts with I- (allowed in IOB1) starts with B- instead.

    In IOB1, I-X starts an entity unless the previous tag is of type X; IOB2 input is returned unchanged.
    """
    converted: list[str] = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        converted.append(tag)
        previous = tag
    return converted


def _entity_types(examples: Iterable[NerExample]) -> set[str]:
    return {tag[2:] for example in examples for tag in example.tags if tag != "O"}


def label_list(examples: Iterable[NerExample]) -> list[str]:
    """O, then B-TYPE and I-TYPE for each entity type in alphabetical order.

    Both tags of a type are listed even when the data happens to have only single-word entities of
    that type (so no I-): otherwise a multi-word entity of a known type would be refused elsewhere.
    """
    return ["O", *(f"{prefix}-{kind}" for kind in sorted(_entity_types(examples)) for prefix in "BI")]


def check_tags(examples: Iterable[NerExample], labels: list[str], path: Path) -> None:
    """Raise DataFileError at the first sentence with a tag outside `labels` (e.g. eval vs. training)."""
    allowed = set(labels)
    for example in examples:
        for tag in to_iob2(example.tags):
            if tag not in allowed:
                raise DataFileError(
                    f"{path}, line {example.line}: tag {tag!r} is not among the training tags "
                    f"({', '.join(labels)}); the model cannot predict an entity type the training data "
                    "never has: add examples of it to the training file or remove it from this one"
                )
