"""NER building blocks: reading and checking CoNLL/JSONL files, IOB1 to IOB2, word tags onto sub-tokens
with a real (tiny) WordPiece tokenizer, and conlleval-style entity scores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bertq.conll import NerExample, check_tags, label_list, read_ner, to_iob2
from bertq.datafiles import DataFileError
from bertq.worker.ner import (
    IGNORE_INDEX,
    align_labels,
    entity_metrics,
    logits_to_tags,
    needs_prefix_space,
    tokenize_and_align,
)

CONLL2003 = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"
LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
"""The 9 CoNLL-2003 IOB2 labels: O, then B- and I- of each entity type in alphabetical order."""


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory: pytest.TempPathFactory):
    """A lower-casing BERT tokenizer whose vocabulary has no "blackburn": it becomes black ##bu ##rn."""
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("wordpiece")
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "peter", "black", "##bu", "##rn", "visits", "leeds"]
    (folder / "vocab.txt").write_text("\n".join(pieces) + "\n")
    # from_pretrained, not BertTokenizerFast(vocab_file=...): transformers 5 ignores vocab_file there.
    return BertTokenizerFast.from_pretrained(str(folder))


# --------------------------------------------------------------------------------------------
# Word tags onto sub-tokens


def test_a_word_split_into_pieces_is_labelled_once_on_its_first_piece(wordpiece):
    label2id = {label: i for i, label in enumerate(LABELS)}
    sentence = NerExample(["Peter", "Blackburn", "visits", "Leeds"], ["B-PER", "I-PER", "O", "B-LOC"], line=1)

    columns = tokenize_and_align([sentence], wordpiece, label2id, max_length=32)

    pieces = wordpiece.convert_ids_to_tokens(columns["input_ids"][0])
    assert pieces == ["[CLS]", "peter", "black", "##bu", "##rn", "visits", "leeds", "[SEP]"]
    labels = columns["labels"][0]
    assert len(labels) == len(pieces)
    labelled = [(piece, LABELS[label]) for piece, label in zip(pieces, labels) if label != IGNORE_INDEX]
    # One label per word, on its first piece; "##bu", "##rn" and the special tokens carry none.
    assert labelled == [("peter", "B-PER"), ("black", "I-PER"), ("visits", "O"), ("leeds", "B-LOC")]
    ignored = [piece for piece, label in zip(pieces, labels) if label == IGNORE_INDEX]
    assert ignored == ["[CLS]", "##bu", "##rn", "[SEP]"]


def test_iob1_tags_are_converted_before_alignment_and_truncation_keeps_lengths(wordpiece):
    label2id = {label: i for i, label in enumerate(LABELS)}
    iob1 = NerExample(["Peter", "Blackburn", "visits", "Leeds"], ["I-PER", "I-PER", "O", "I-LOC"], line=7)

    full = tokenize_and_align([iob1], wordpiece, label2id, max_length=32)
    assert [LABELS[i] for i in full["labels"][0] if i != IGNORE_INDEX] == ["B-PER", "I-PER", "O", "B-LOC"]

    cut = tokenize_and_align([iob1], wordpiece, label2id, max_length=4)  # [CLS] peter black [SEP]
    assert len(cut["input_ids"][0]) == len(cut["labels"][0]) == 4
    assert [LABELS[i] for i in cut["labels"][0] if i != IGNORE_INDEX] == ["B-PER", "I-PER"]

    with pytest.raises(ValueError, match="line 7"):
        tokenize_and_align([iob1], wordpiece, {"O": 0}, max_length=32)


def test_align_labels_on_hand_made_word_ids():
    # [CLS] w0 w1 w1 w1 w2 [SEP] [PAD]
    word_ids = [None, 0, 1, 1, 1, 2, None, None]
    assert align_labels(word_ids, [3, 4, 0]) == [-100, 3, 4, -100, -100, 0, -100, -100]


def test_byte_level_bpe_needs_a_prefix_space_and_is_refused_without_one(wordpiece):
    from transformers import RobertaTokenizerFast

    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>", "a", "b", "Ġ", "Ġa", "Ġb"])}
    merges = [("Ġ", "a"), ("Ġ", "b")]
    without = RobertaTokenizerFast(vocab=vocab, merges=merges)
    with_space = RobertaTokenizerFast(vocab=vocab, merges=merges, add_prefix_space=True)
    assert needs_prefix_space(without) and needs_prefix_space(with_space)
    assert not needs_prefix_space(wordpiece)

    sentence = NerExample(["a", "b"], ["B-PER", "O"], line=1)
    with pytest.raises(ValueError, match="add_prefix_space=True"):
        tokenize_and_align([sentence], without, {"O": 0, "B-PER": 1}, max_length=8)
    columns = tokenize_and_align([sentence], with_space, {"O": 0, "B-PER": 1}, max_length=8)
    assert with_space.convert_ids_to_tokens(columns["input_ids"][0]) == ["<s>", "Ġa", "Ġb", "</s>"]
    assert columns["labels"][0] == [-100, 1, 0, -100]


# --------------------------------------------------------------------------------------------
# IOB1 -> IOB2


def test_to_iob2_starts_every_entity_with_b():
    # IOB1: I- starts an entity; B- only where an entity directly follows one of the same type.
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-ORG", "O", "I-MISC"]
    expected = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "B-ORG", "O", "B-MISC"]
    assert to_iob2(iob1) == expected
    assert to_iob2(expected) == expected
    assert to_iob2([]) == []


# --------------------------------------------------------------------------------------------
# Scores


def test_entity_metrics_count_whole_entities():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "O", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "O", "B-MISC"]]
    # Gold: PER, LOC, ORG (2 words). Predicted: PER and LOC right, a 1-word ORG (wrong boundary) and a
    # spurious MISC. So 2 right of 4 predicted and of 3 gold; 6 of 8 tokens right.
    metrics = entity_metrics(gold, predicted)
    assert metrics["entity_precision"] == pytest.approx(2 / 4)
    assert metrics["entity_recall"] == pytest.approx(2 / 3)
    assert metrics["entity_f1"] == pytest.approx(2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3))
    assert metrics["token_accuracy"] == pytest.approx(6 / 8)


def test_entity_metrics_edge_cases():
    assert entity_metrics([["B-PER", "O"]], [["B-PER", "O"]]) == {
        "entity_precision": 1.0,
        "entity_recall": 1.0,
        "entity_f1": 1.0,
        "token_accuracy": 1.0,
    }
    # As in conlleval, a predicted I- after O starts an entity (the argmax may produce one).
    assert entity_metrics([["O", "B-LOC", "I-LOC"]], [["O", "I-LOC", "I-LOC"]])["entity_f1"] == 1.0
    nothing_found = entity_metrics([["B-PER", "O"]], [["O", "O"]])
    assert nothing_found["entity_precision"] == nothing_found["entity_f1"] == 0.0
    assert nothing_found["token_accuracy"] == 0.5
    with pytest.raises(ValueError):
        entity_metrics([["O", "O"]], [["O"]])


def test_logits_to_tags_keeps_only_labelled_positions():
    id2label = {0: "O", 1: "B-PER", 2: "I-PER"}
    argmax = np.array([[0, 1, 2, 2, 0], [1, 0, 0, 2, 1]])
    logits = np.eye(3)[argmax] * 5.0  # one-hot scores: the argmax is `argmax`
    label_ids = np.array([[-100, 1, 2, -100, -100], [-100, 1, -100, 0, -100]])

    gold, predicted = logits_to_tags(logits, label_ids, id2label)

    assert gold == [["B-PER", "I-PER"], ["B-PER", "O"]]
    assert predicted == [["B-PER", "I-PER"], ["O", "I-PER"]]


# --------------------------------------------------------------------------------------------
# Reading files


def test_read_ner_column_file_and_jsonl(tmp_path):
    conll = _write(
        tmp_path / "train.conll",
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP I-ORG\nrejects VBZ B-VP O\n\n\nPeter NNP B-NP B-PER\n"
        "-DOCSTART- -X- -X- O\nBlackburn NNP I-NP I-PER",  # no blank line before DOCSTART, none at the end
    )
    assert read_ner(conll) == [
        NerExample(["EU", "rejects"], ["I-ORG", "O"], 3),
        NerExample(["Peter"], ["B-PER"], 7),
        NerExample(["Blackburn"], ["I-PER"], 9),
    ]
    jsonl = _write(
        tmp_path / "train.jsonl",
        json.dumps({"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]})
        + "\n\n"
        + json.dumps({"tokens": ["Peter"], "ner_tags": ["B-PER"]})
        + "\n",
    )
    assert read_ner(jsonl) == [NerExample(["EU", "rejects"], ["B-ORG", "O"], 1), NerExample(["Peter"], ["B-PER"], 3)]


def _bad_files(tmp: Path) -> list[tuple[Path, list[str]]]:
    """(file, words its error must contain)."""
    return [
        (
            _write(tmp / "ragged.txt", "EU NNP B-ORG\nrejects VBZ O\n\nPeter B-PER\n"),
            ["ragged.txt", "line 4", "2 columns", "has 3"],
        ),
        (_write(tmp / "one.txt", "EU\nrejects\n"), ["line 1", "tag"]),
        (_write(tmp / "bioes.txt", "EU B-ORG\n\nPeter S-PER\n"), ["bioes.txt", "line 3", "'S-PER'", "IOB"]),
        (_write(tmp / "lower.iob", "EU b-org\n"), ["line 1", "'b-org'"]),
        (
            _write(tmp / "short.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a", "b"], "tags": ["O"]}\n'),
            ["short.jsonl", "line 2", "2 tokens but 1 tags"],
        ),
        (_write(tmp / "nokey.jsonl", '{"words": ["a"], "tags": ["O"]}\n'), ["line 1", "'tokens'"]),
        (_write(tmp / "ids.jsonl", '{"tokens": ["a"], "ner_tags": [3]}\n'), ["line 1", "3"]),
        (
            _write(tmp / "latin1.txt", b"EU B-ORG\n\n" + "caf\xe9 O\n".encode("latin-1")),
            ["latin1.txt", "line 3", "UTF-8"],
        ),
        (_write(tmp / "empty.txt", ""), ["empty.txt", "no sentences"]),
        (_write(tmp / "docstart.txt", "-DOCSTART- -X- -X- O\n\n"), ["no sentences"]),
        (_write(tmp / "empty.jsonl", "\n"), ["no sentences"]),
        (_write(tmp / "data.csv", "token,tag\n"), ["data.csv", ".jsonl"]),
    ]


def test_read_ner_refuses_bad_files_naming_file_and_line(tmp_path):
    for path, words in _bad_files(tmp_path):
        with pytest.raises(DataFileError) as refused:
            read_ner(path)
        for word in words:
            assert word in str(refused.value), (path.name, word, str(refused.value))


def test_label_list_and_check_tags(tmp_path):
    train = [NerExample(["Leeds"], ["B-LOC"], 1), NerExample(["EU", "men"], ["I-ORG", "O"], 3)]
    assert label_list(train) == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]

    labels = label_list(train)
    check_tags([NerExample(["New", "York"], ["I-LOC", "I-LOC"], 1)], labels, tmp_path / "dev.txt")  # IOB1 is fine
    unseen = [NerExample(["Leeds"], ["B-LOC"], 1), NerExample(["the", "Olympics"], ["O", "B-EVENT"], 5)]
    with pytest.raises(DataFileError) as refused:
        check_tags(unseen, labels, tmp_path / "dev.txt")
    message = str(refused.value)
    assert "dev.txt" in message and "line 5" in message and "'B-EVENT'" in message
    assert "O, B-LOC, I-LOC, B-ORG, I-ORG" in message


def test_conll_module_imports_the_standard_library_only():
    probe = (
        "import sys, bertq.conll; "
        "print(','.join(m for m in ('torch', 'transformers', 'numpy', 'seqeval') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


# --------------------------------------------------------------------------------------------
# The real CoNLL-2003 files


@pytest.mark.skipif(not CONLL2003.is_dir(), reason=f"no CoNLL-2003 data in {CONLL2003}")
def test_real_conll2003_counts_and_labels():
    train = read_ner(CONLL2003 / "train.txt")
    valid = read_ner(CONLL2003 / "valid.txt")
    # The published CoNLL-2003 English statistics.
    assert len(train) == 14041
    assert sum(len(example.tokens) for example in train) == 203621
    assert len(valid) == 3250
    assert sum(len(example.tokens) for example in valid) == 51362
    assert label_list(train) == LABELS
    # These copies are IOB2 already (as Hugging Face conll2003 is): conversion changes nothing.
    assert all(to_iob2(example.tags) == example.tags for example in train)
    check_tags(valid, label_list(train), CONLL2003 / "valid.txt")
