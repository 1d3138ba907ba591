"""A small sentiment data set that bertq makes itself, for the demo and the tests.

Sentences are built from templates, with positive and negative phrases and some negations
("not bad"), so that a classifier has something to learn beyond single words. It is synthetic:
real benchmarks use ../shared/data (SST-2); this exists so the demo needs nothing but bertq.
"""

from __future__ import annotations

import random
from pathlib import Path

SUBJECTS = [
    "the movie",
    "this film",
    "the plot",
    "the acting",
    "the soundtrack",
    "the ending",
    "the script",
    "the director's work",
    "the cast",
    "this story",
    "the dialogue",
    "the camera work",
]
POSITIVE = [
    "wonderful",
    "moving",
    "brilliant",
    "funny",
    "charming",
    "gripping",
    "beautiful",
    "clever",
    "delightful",
    "superb",
    "touching",
    "fresh",
]
NEGATIVE = [
    "boring",
    "dull",
    "awful",
    "clumsy",
    "tedious",
    "flat",
    "predictable",
    "messy",
    "lifeless",
    "painful",
    "shallow",
    "stale",
]
TEMPLATES = [
    "{s} was {a} .",
    "{s} is {a} from start to finish .",
    "i thought {s} was {a} .",
    "honestly , {s} felt {a} .",
    "{s} is simply {a} .",
]
NEGATED = ["{s} was not {a} .", "{s} is never {a} .", "i would not call {s} {a} ."]


def make_examples(count: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        positive = rng.random() < 0.5
        negate = rng.random() < 0.25
        # A negated phrase flips the polarity of the adjective it carries.
        adjectives = POSITIVE if positive != negate else NEGATIVE
        template = rng.choice(NEGATED if negate else TEMPLATES)
        text = template.format(s=rng.choice(SUBJECTS), a=rng.choice(adjectives))
        examples.append((text, int(positive)))
    return examples


def write_demo_data(folder: Path, *, train: int = 400, dev: int = 120, seed: int = 7) -> tuple[Path, Path]:
    """train.tsv and dev.tsv (columns sentence, label) in SST-2's layout."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, count, offset in (("train", train, 0), ("dev", dev, 1)):
        path = folder / f"{name}.tsv"
        lines = ["sentence\tlabel"] + [f"{t}\t{y}" for t, y in make_examples(count, seed + offset)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


def demo_vocabulary() -> list[str]:
    """Every word the generator can produce (tests build a tiny WordPiece vocabulary from it)."""
    words = set()
    for phrase in SUBJECTS + POSITIVE + NEGATIVE + TEMPLATES + NEGATED:
        words.update(phrase.replace("{s}", "").replace("{a}", "").replace("'", " ' ").split())
    return sorted(words)


def write_tiny_model(folder: Path) -> Path:
    """A 2-layer, 32-wide BERT with a WordPiece vocabulary of the demo data's words, for tests and the
    GPU check's dry run. Imports torch and transformers, so only those callers reach it."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast  # type: ignore[attr-defined]

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *demo_vocabulary(), "##s", "##ing", "##ed"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 ignores `vocab_file=` in the constructor; from_pretrained reads the folder's vocab.txt.
    tokenizer = BertTokenizerFast.from_pretrained(folder, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
