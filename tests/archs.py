"""Tiny random models of every encoder architecture bertq supports, built once per test run.

A pytest plugin (tests/conftest.py names it in `pytest_plugins`): the session fixture `arch_models`
builds, for BERT, RoBERTa, ALBERT, DistilBERT, ELECTRA, DeBERTa-v2 and XLM-RoBERTa, a 2-layer,
32-wide bare encoder and a tokenizer of the architecture's real kind, trained in seconds with the
`tokenizers` library on wikitext and SST-2 sentences (so SST-2 words are in the vocabulary):
WordPiece for BERT, DistilBERT and ELECTRA; byte-level BPE (the Ġ word prefix) for RoBERTa;
SentencePiece Unigram (the ▁ word prefix) for ALBERT, DeBERTa-v2 and XLM-R. Each tokenizer is wrapped
in the model's own fast tokenizer class, with that architecture's special tokens, and saved with the
model, so `AutoTokenizer` and the Auto model classes load the folder as they would a real checkpoint.
The Hub is never used: nothing here is loaded by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WIDTH = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
POSITIONS = 128
"""The longest input each tiny model accepts (RoBERTa and XLM-R get two more positions: their
position ids start after the padding index)."""
VOCAB_SIZE = 2000


@dataclass(frozen=True)
class Arch:
    """One architecture: its name in tests, its tokenizer kind and special tokens, its model."""

    name: str
    model_type: str
    tokenizer_kind: str
    """wordpiece, bpe (byte-level) or unigram (SentencePiece, Metaspace)."""
    specials: dict[str, str]
    """transformers' special-token roles -> the token, in vocabulary-id order."""
    pair_template: str
    """How a pair of texts is framed ($A, $B), e.g. `[CLS] $A [SEP] $B:1 [SEP]:1`."""
    lowercase: bool = False


_BERT_SPECIALS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}
_ROBERTA_SPECIALS = {
    "bos_token": "<s>",
    "pad_token": "<pad>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
}
_BERT_PAIR = "[CLS] $A [SEP] $B:1 [SEP]:1"
_ROBERTA_PAIR = "<s> $A </s> </s> $B </s>"

ARCHS: dict[str, Arch] = {
    arch.name: arch
    for arch in (
        Arch("bert", "bert", "wordpiece", _BERT_SPECIALS, _BERT_PAIR, lowercase=True),
        Arch("roberta", "roberta", "bpe", _ROBERTA_SPECIALS, _ROBERTA_PAIR),
        Arch(
            "albert",
            "albert",
            "unigram",
            {
                "pad_token": "<pad>",
                "unk_token": "<unk>",
                "cls_token": "[CLS]",
                "sep_token": "[SEP]",
                "mask_token": "[MASK]",
            },
            _BERT_PAIR,
            lowercase=True,
        ),
        Arch("distilbert", "distilbert", "wordpiece", _BERT_SPECIALS, _BERT_PAIR, lowercase=True),
        Arch("electra", "electra", "wordpiece", _BERT_SPECIALS, _BERT_PAIR, lowercase=True),
        Arch(
            "deberta-v2",
            "deberta-v2",
            "unigram",
            {
                "pad_token": "[PAD]",
                "cls_token": "[CLS]",
                "sep_token": "[SEP]",
                "unk_token": "[UNK]",
                "mask_token": "[MASK]",
            },
            _BERT_PAIR,
        ),
        Arch("xlm-roberta", "xlm-roberta", "unigram", _ROBERTA_SPECIALS, _ROBERTA_PAIR),
    )
}


def training_lines() -> list[str]:
    """A few hundred lines of wikitext, every SST-2 sentence of the first rows, CoNLL and SQuAD text."""
    lines = [
        line.strip()
        for line in (SHARED_DATA / "corpus" / "wikitext2_test.raw").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("=")
    ][:400]
    for name in ("train_sentences.tsv", "dev.tsv"):
        rows = (SHARED_DATA / "sst2" / name).read_text(encoding="utf-8").splitlines()[1:]
        lines += [row.split("\t")[0] for row in rows[:1000]]
    conll = (SHARED_DATA / "conll2003" / "train.txt").read_text(encoding="utf-8").split("\n\n")[:300]
    lines += [" ".join(line.split(" ")[0] for line in block.splitlines()) for block in conll]
    import json

    squad = json.loads((SHARED_DATA / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    for article in squad["data"][:3]:
        for paragraph in article["paragraphs"]:
            lines.append(paragraph["context"])
            lines += [qa["question"] for qa in paragraph["qas"]]
    return lines


def _backend(arch: Arch, lines: list[str]) -> Any:
    """A `tokenizers.Tokenizer` of the architecture's kind, trained on `lines`, with its post-processor."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    specials = list(arch.specials.values())
    if arch.tokenizer_kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=arch.specials["unk_token"]))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=arch.lowercase)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer: Any = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials)
    elif arch.tokenizer_kind == "bpe":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB_SIZE, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
    else:
        tokenizer = Tokenizer(models.Unigram())
        steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
        if arch.lowercase:
            steps.append(normalizers.Lowercase())
        tokenizer.normalizer = normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(
            vocab_size=VOCAB_SIZE, special_tokens=specials, unk_token=arch.specials["unk_token"]
        )
    tokenizer.train_from_iterator(lines, trainer=trainer)
    if arch.tokenizer_kind == "bpe":
        tokenizer.post_processor = processors.RobertaProcessing(
            ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>")), add_prefix_space=False
        )
    else:
        first, last = (
            (arch.specials["cls_token"], arch.specials["sep_token"])
            if "cls_token" in arch.specials
            else (arch.specials["bos_token"], arch.specials["eos_token"])
        )
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{first} $A {last}",
            pair=arch.pair_template,
            special_tokens=[(t, tokenizer.token_to_id(t)) for t in {first, last}],
        )
    return tokenizer


def _tokenizer_class(arch: Arch) -> Any:
    import transformers

    name = {
        "bert": "BertTokenizerFast",
        "roberta": "RobertaTokenizerFast",
        "albert": "AlbertTokenizerFast",
        "distilbert": "DistilBertTokenizerFast",
        "electra": "ElectraTokenizerFast",
        "deberta-v2": "DebertaV2TokenizerFast",
        "xlm-roberta": "XLMRobertaTokenizerFast",
    }[arch.name]
    return getattr(transformers, name)


def _config(arch: Arch, tokenizer: Any) -> Any:
    import transformers

    vocab = len(tokenizer)
    pad = tokenizer.pad_token_id
    if arch.name == "distilbert":
        return transformers.DistilBertConfig(
            vocab_size=vocab,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=POSITIONS,
            pad_token_id=pad,
        )
    common = dict(vocab_size=vocab, pad_token_id=pad, **WIDTH)
    if arch.name == "bert":
        return transformers.BertConfig(max_position_embeddings=POSITIONS, **common)
    if arch.name == "electra":
        return transformers.ElectraConfig(embedding_size=32, max_position_embeddings=POSITIONS, **common)
    if arch.name == "albert":
        return transformers.AlbertConfig(embedding_size=16, max_position_embeddings=POSITIONS, **common)
    if arch.name == "deberta-v2":
        return transformers.DebertaV2Config(
            max_position_embeddings=POSITIONS,
            type_vocab_size=0,
            relative_attention=True,
            position_buckets=32,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            **common,
        )
    roberta_like = dict(
        max_position_embeddings=POSITIONS + 2,
        type_vocab_size=1,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **common,
    )
    if arch.name == "roberta":
        return transformers.RobertaConfig(**roberta_like)
    return transformers.XLMRobertaConfig(**roberta_like)


def build_arch(arch: Arch, folder: Path, lines: list[str]) -> Path:
    """The bare encoder of `arch` and its tokenizer, saved into `folder`."""
    import torch
    from transformers import AutoModel

    backend = _backend(arch, lines)
    tokenizer = _tokenizer_class(arch)(tokenizer_object=backend, model_max_length=POSITIONS, **arch.specials)
    torch.manual_seed(0)
    config = _config(arch, tokenizer)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def arch_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """architecture name -> the folder of its tiny bare encoder and tokenizer (built once per run)."""
    root = tmp_path_factory.mktemp("archs")
    lines = training_lines()
    return {name: build_arch(arch, root / name, lines) for name, arch in ARCHS.items()}
