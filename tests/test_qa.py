"""Extractive question answering: SQuAD files read and checked, windows labelled, spans turned back
into text, and the official metrics, with a real WordPiece tokenizer built from a tiny vocabulary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bertq.datafiles import DataFileError
from bertq.squad import QAExample, read_squad, split_by_article
from bertq.worker.qa import (
    normalize_answer,
    postprocess_predictions,
    prepare_eval_features,
    prepare_train_features,
    squad_metrics,
)

SQUAD_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad" / "dev-v1.1.json"

# The answer lies in the middle of a context too long for one window, and its first word is split
# into WordPiece pieces ("un ##believ ##able") that the vocabulary below holds but not the word itself.
CONTEXT = "The quick fox jumped over the lazy dog. Later, the Unbelievable cat slept on the mat."
ANSWER = "Unbelievable cat"
LONG = QAExample(
    id="long",
    title="Cats",
    context=CONTEXT,
    question="Who slept on the mat?",
    answers=[(ANSWER, CONTEXT.index(ANSWER))],
)
SHORT = QAExample(
    id="short",
    title="Dogs",
    context="The lazy dog slept.",
    question="Who slept?",
    answers=[("lazy dog", 4)],
)
# 9 tokens of question and special tokens leave 8 context tokens per window, 3 of them overlapping.
WINDOW = {"max_length": 17, "stride": 3}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import BertTokenizerFast

    words = "who slept on the mat ? quick fox jumped over lazy dog . later , un ##believ ##able cat"
    vocab_file = tmp_path_factory.mktemp("qa-tokenizer") / "vocab.txt"
    vocab_file.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words.split()]) + "\n")
    # transformers 5 reads the vocabulary from `vocab`; a `vocab_file=` keyword is silently ignored.
    built = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)
    assert built.tokenize(ANSWER) == ["un", "##believ", "##able", "cat"]
    assert "[UNK]" not in built.tokenize(CONTEXT + " " + LONG.question)
    return built


def _find(tokens: list[str], wanted: list[str]) -> int:
    """Index where `wanted` occurs in `tokens`, or -1."""
    return next((i for i in range(len(tokens) - len(wanted) + 1) if tokens[i : i + len(wanted)] == wanted), -1)


# --------------------------------------------------------------------------------------------
# Windows and their labels


def test_train_windows_point_at_the_answer_only_where_it_is_whole(tokenizer) -> None:
    answer_tokens = tokenizer.tokenize(ANSWER)
    features = prepare_train_features([LONG], tokenizer, **WINDOW)

    assert set(features) == {"input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions"}
    windows = [tokenizer.convert_ids_to_tokens(ids) for ids in features["input_ids"]]
    assert all(len(tokens) <= WINDOW["max_length"] for tokens in windows)
    holding = [i for i, tokens in enumerate(windows) if _find(tokens, answer_tokens) >= 0]
    cut = [i for i, tokens in enumerate(windows) if i not in holding and ("un" in tokens or "cat" in tokens)]
    assert holding and holding[0] > 0, "the answer should lie beyond the first window"
    assert cut, "some window should hold only part of the answer"

    for i, tokens in enumerate(windows):
        start, end = features["start_positions"][i], features["end_positions"][i]
        if i in holding:
            assert tokens[start : end + 1] == answer_tokens
            assert tokenizer.decode(features["input_ids"][i][start : end + 1]) == ANSWER.lower()
        else:
            assert (start, end) == (0, 0) and tokens[0] == "[CLS]"


def test_eval_windows_carry_their_example_and_context_offsets_only(tokenizer) -> None:
    features = prepare_eval_features([LONG, SHORT], tokenizer, **WINDOW)

    assert features["example_id"][0] == "long" and features["example_id"][-1] == "short"
    assert features["example_id"].count("short") == 1
    columns = (features["input_ids"], features["offset_mapping"], features["example_id"])
    for ids, offsets, example_id in zip(*columns, strict=True):
        tokens = tokenizer.convert_ids_to_tokens(ids)
        context = {"long": LONG, "short": SHORT}[example_id].context
        question_end = tokens.index("[SEP]")
        assert all(offset is None for offset in offsets[: question_end + 1]) and offsets[-1] is None
        context_part = slice(question_end + 1, -1)
        for token, offset in zip(tokens[context_part], offsets[context_part], strict=True):
            assert context[offset[0] : offset[1]].lower() == token.removeprefix("##")


# --------------------------------------------------------------------------------------------
# From logits back to text


def test_postprocess_picks_the_best_valid_span_across_windows(tokenizer) -> None:
    features = prepare_eval_features([LONG, SHORT], tokenizer, **WINDOW)
    windows = [tokenizer.convert_ids_to_tokens(ids) for ids in features["input_ids"]]
    width = WINDOW["max_length"] + 2  # logits padded beyond the longest window, as a batch would be
    starts = np.full((len(windows), width), -20.0)
    ends = np.full((len(windows), width), -20.0)
    long_windows = [i for i, example_id in enumerate(features["example_id"]) if example_id == "long"]
    answer_tokens = tokenizer.tokenize(ANSWER)
    holding = next(i for i in long_windows if _find(windows[i], answer_tokens) >= 0)
    others = [i for i in long_windows if i != holding]
    assert len(others) >= 3, "the decoys below need three other windows"

    # The answer: start + end = 10.
    at = _find(windows[holding], answer_tokens)
    starts[holding, at], ends[holding, at + len(answer_tokens) - 1] = 5, 5
    # A valid but weaker span in another window: 6.
    first_context = windows[others[0]].index("[SEP]") + 1
    starts[others[0], first_context], ends[others[0], first_context + 1] = 3, 3
    # Higher-scoring invalid spans: inside the question (38), end before start (30), longer than
    # max_answer_length (18), and in the padding past the window (100).
    starts[others[0], 1], ends[others[0], windows[others[0]].index("[SEP]") - 1] = 19, 19
    last_context = len(windows[others[1]]) - 2
    starts[others[1], last_context], ends[others[1], last_context - 2] = 15, 15
    last = others[-1]
    starts[last, windows[last].index("[SEP]") + 1], ends[last, len(windows[last]) - 2] = 9, 9
    starts[last, len(windows[last])], ends[last, len(windows[last]) + 1] = 50, 50
    # The short example's own window.
    short = features["example_id"].index("short")
    starts[short, windows[short].index("lazy")], ends[short, windows[short].index("dog")] = 4, 4

    max_answer_length = len(windows[last]) - windows[last].index("[SEP]") - 3
    assert len(answer_tokens) <= max_answer_length
    predictions = postprocess_predictions([LONG, SHORT], features, starts, ends, max_answer_length=max_answer_length)

    assert predictions == {"long": ANSWER, "short": "lazy dog"}


def test_postprocess_gives_an_empty_answer_when_no_span_is_valid(tokenizer) -> None:
    features = prepare_eval_features([SHORT], tokenizer, **WINDOW)
    length = len(features["input_ids"][0])
    starts = np.zeros((1, length))
    ends = np.zeros((1, length))
    ends[0, 1] = 10.0  # with n_best=1 the only end considered is a question token
    assert postprocess_predictions([SHORT], features, starts, ends, n_best=1) == {"short": ""}
    with pytest.raises(ValueError, match="windows"):
        postprocess_predictions([SHORT], features, np.zeros((2, length)), np.zeros((2, length)))


# --------------------------------------------------------------------------------------------
# Metrics


def test_normalize_answer_follows_the_official_script() -> None:
    assert normalize_answer("  The  Quick, brown-fox! ") == "quick brownfox"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("banana theatre") == "banana theatre"  # articles only as whole words


def _example(example_id: str, *golds: str) -> QAExample:
    context = " ".join(golds)
    return QAExample(example_id, "t", context, "?", [(g, context.index(g)) for g in golds])


def test_squad_metrics_by_hand() -> None:
    examples = [
        _example("same", "Eiffel tower"),
        _example("partial", "Paris, France"),
        _example("several", "whale", "a blue whale", "shark"),
        _example("best f1", "ball", "big ball"),
        _example("unanswered", "red"),
    ]
    predictions = {
        "same": "The Eiffel Tower!",  # equal once articles, punctuation and case are gone
        "partial": "in the city of Paris",  # 1 shared of 4 predicted, 2 gold: P 1/4, R 1/2, F1 1/3
        "several": "blue whale",  # equals the second gold answer
        "best f1": "red big ball",  # vs "ball": P 1/3, R 1 → 1/2; vs "big ball": P 2/3, R 1 → 4/5
        "not asked": "anything",  # ignored
    }
    metrics = squad_metrics(predictions, examples)
    assert metrics["exact_match"] == pytest.approx(2 / 5)
    assert metrics["f1"] == pytest.approx((1 + 1 / 3 + 1 + 4 / 5 + 0) / 5)


# --------------------------------------------------------------------------------------------
# Reading SQuAD files


GOOD: dict[str, Any] = {
    "id": "q-good",
    "question": "What is the capital of France?",
    "context": "Paris is the capital of France.",
    "answers": [{"text": "Paris", "answer_start": 0}],
}


def _squad_json(*bad_qas: dict, context: str = GOOD["context"]) -> dict:
    good_qa = {k: v for k, v in GOOD.items() if k != "context"}
    return {
        "version": "1.1",
        "data": [
            {
                "title": "France",
                "paragraphs": [
                    {"context": GOOD["context"], "qas": [good_qa]},
                    {"context": context, "qas": [{**good_qa, "id": "q-bad"} | qa for qa in bad_qas]},
                ],
            }
        ],
    }


def _jsonl(*changes: dict) -> str:
    """The good example on line 1, then one line per change to it (a key set to None is dropped)."""
    rows = [
        GOOD,
        *({k: v for k, v in (GOOD | {"id": "q-bad"} | change).items() if v is not None} for change in changes),
    ]
    return "\n".join(json.dumps(row) for row in rows)


def _bad_file_cases() -> list[tuple[str, str, str | bytes, list[str]]]:
    """(case, file name, content, words the error must contain)."""
    context = GOOD["context"]
    no_qas = {"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": {}}]}]}
    return [
        (
            "not UTF-8",
            "a.json",
            json.dumps(_squad_json({})).replace("Paris", "Par\xeds").encode("latin-1"),
            ["not UTF-8", "byte"],
        ),
        ("not JSON", "a.json", '{"data": [', ["not valid JSON"]),
        ("no data list", "a.json", json.dumps({"articles": []}), ['"data"']),
        ("qas not a list", "a.json", json.dumps(no_qas), ["paragraphs[0]", '"qas"']),
        ("no questions at all", "a.json", json.dumps({"data": [{"title": "t", "paragraphs": []}]}), ["no examples"]),
        ("empty context", "a.json", json.dumps(_squad_json({}, context="  ")), ["q-bad", "context is empty"]),
        ("empty question", "a.json", json.dumps(_squad_json({"question": " "})), ["q-bad", "question is empty"]),
        (
            "answer at the wrong offset",
            "a.json",
            json.dumps(_squad_json({"answers": [{"text": "capital", "answer_start": 5}]})),
            [
                f"answer 'capital' for example q-bad is not at offset 5 of its context (found {context[5:12]!r})",
                f"offset {context.index('capital')}",
            ],
        ),
        (
            "answer without a start",
            "a.json",
            json.dumps(_squad_json({"answers": [{"text": "Paris"}]})),
            ["q-bad", "answer_start"],
        ),
        ("no answers", "a.json", json.dumps(_squad_json({"answers": []})), ["q-bad", "no answers"]),
        ("duplicate id", "a.json", json.dumps(_squad_json({}, {})), ["q-bad", "already used"]),
        ("no id", "a.json", json.dumps(_squad_json({"id": ""})), ["paragraphs[1].qas[0]", '"id"']),
        (
            "JSONL answer at the wrong offset",
            "a.jsonl",
            _jsonl({"answers": {"text": ["France"], "answer_start": [3]}}),
            ["line 2", "answer 'France' for example q-bad is not at offset 3"],
        ),
        (
            "JSONL answer lists of different lengths",
            "a.jsonl",
            _jsonl({"answers": {"text": ["Paris"], "answer_start": []}}),
            ["line 2", "q-bad", "same length"],
        ),
        ("JSONL no context", "a.jsonl", _jsonl({"context": None}), ["line 2", "q-bad", '"context"']),
        ("JSONL duplicate id", "a.jsonl", _jsonl({"id": "q-good"}), ["line 2", "q-good", "already used", "line 1"]),
        ("JSONL not JSON", "a.jsonl", _jsonl() + "\n{oops\n", ["line 2", "not valid JSON"]),
        ("unknown extension", "a.txt", json.dumps(GOOD), [".json", ".jsonl"]),
    ]


@pytest.mark.parametrize("case", [c[0] for c in _bad_file_cases()])
def test_bad_squad_files_are_refused_with_where_and_why(tmp_path: Path, case: str) -> None:
    _, name, content, words = next(c for c in _bad_file_cases() if c[0] == case)
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataFileError) as raised:
        read_squad(path)
    message = str(raised.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_questions_without_answers_are_read_when_answers_are_not_required(tmp_path: Path) -> None:
    path = tmp_path / "predict.json"
    path.write_text(json.dumps(_squad_json({"answers": []})))
    examples = read_squad(path, require_answers=False)
    assert [(e.id, e.answers) for e in examples] == [("q-good", [("Paris", 0)]), ("q-bad", [])]


def test_json_and_both_jsonl_layouts_read_the_same(tmp_path: Path) -> None:
    squad = tmp_path / "a.json"
    squad.write_text(
        json.dumps(
            {
                "data": [
                    {
                        "title": "France",
                        "paragraphs": [
                            {"context": GOOD["context"], "qas": [{k: v for k, v in GOOD.items() if k != "context"}]}
                        ],
                    }
                ]
            }
        )
    )
    listed = tmp_path / "listed.jsonl"
    listed.write_text(json.dumps(GOOD | {"title": "France"}) + "\n\n")
    columns = tmp_path / "columns.jsonl"
    columns.write_text(json.dumps(GOOD | {"title": "France", "answers": {"text": ["Paris"], "answer_start": [0]}}))
    expected = [QAExample("q-good", "France", GOOD["context"], GOOD["question"], [("Paris", 0)])]
    assert read_squad(squad) == read_squad(listed) == read_squad(columns) == expected


# --------------------------------------------------------------------------------------------
# The real SQuAD v1.1 dev set, and splitting by article


def test_the_official_dev_set_reads_and_splits_by_article() -> None:
    examples = read_squad(SQUAD_DEV)
    assert len(examples) == 10570  # the published count of dev questions
    titles = {e.title for e in examples}

    train, evaluation = split_by_article(examples, eval_fraction=0.2, seed=42)
    again = split_by_article(examples, eval_fraction=0.2, seed=42)
    other_seed = split_by_article(examples, eval_fraction=0.2, seed=7)

    assert (train, evaluation) == again
    train_titles, eval_titles = {e.title for e in train}, {e.title for e in evaluation}
    assert not train_titles & eval_titles and train_titles | eval_titles == titles
    assert sorted(e.id for e in train + evaluation) == sorted(e.id for e in examples)
    assert abs(len(eval_titles) / len(titles) - 0.2) <= 1 / len(titles)
    assert {e.title for e in other_seed[1]} != eval_titles


def test_split_keeps_at_least_one_article_on_each_side() -> None:
    examples = [QAExample(f"q{i}", f"article {i % 3}", "x", "?", [("x", 0)]) for i in range(6)]
    for fraction in (0.01, 0.99):
        train, evaluation = split_by_article(examples, eval_fraction=fraction, seed=0)
        assert train and evaluation
        assert not {e.title for e in train} & {e.title for e in evaluation}
    with pytest.raises(ValueError, match="at least 2"):
        split_by_article(examples[:1], eval_fraction=0.2, seed=0)


def test_a_predicted_answer_keeps_its_own_offsets_and_a_score():
    """The answer's offsets are the predicted span's, not where its text first occurs in the context."""
    import numpy as np

    from bertq.squad import QAExample
    from bertq.worker.qa import predicted_spans

    context = "the cat saw the cat"
    example = QAExample(id="0", title="", context=context, question="who was seen?", answers=[])
    features = {"example_id": ["0"], "offset_mapping": [[None, (0, 3), (4, 7), (8, 11), (12, 15), (16, 19)]]}
    start = np.array([[0.0, 0.0, 1.0, 0.0, 0.0, 6.0]], dtype=np.float32)  # the second "cat"
    end = np.array([[0.0, 0.0, 1.0, 0.0, 0.0, 6.0]], dtype=np.float32)
    span = predicted_spans([example], features, start, end)["0"]
    assert (span.text, span.start, span.end) == ("cat", 16, 19) and context[span.start : span.end] == "cat"
    probability = np.exp(6.0) / (np.exp(6.0) + np.exp(1.0) + 3)  # the softmax over the context's tokens
    assert span.score == pytest.approx(probability**2, rel=1e-5)
