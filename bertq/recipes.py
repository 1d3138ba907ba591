"""Published fine-tuning recipes, per architecture (config.json's `model_type`), in one table.

A fine-tune's (and a distillation student's) warm-up and weight decay default to its model's recipe;
a teacher that must be trained first also takes its learning rate, epochs and batch size from it.
Where a paper does not state a value, bertq's general default stands (marked "default" below).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    lr: float
    epochs: float = 3.0
    batch_size: int = 32
    warmup_ratio: float = 0.06
    """Share of the optimiser steps over which the learning rate rises linearly from 0."""
    weight_decay: float = 0.01
    """AdamW's decoupled weight decay."""


RECIPES: dict[str, Recipe] = {
    # BERT paper and its run_classifier.py, GLUE: batch 32, 3 epochs, lr in {5,4,3,2}e-5, warm-up 10%, decay 0.01
    "bert": Recipe(lr=2e-5, warmup_ratio=0.1, weight_decay=0.01),
    # RoBERTa paper, GLUE (table 10): lr in {1,2,3}e-5, batch 16/32, warm-up 6%, weight decay 0.1
    "roberta": Recipe(lr=2e-5, warmup_ratio=0.06, weight_decay=0.1),
    "xlm-roberta": Recipe(lr=2e-5, warmup_ratio=0.06, weight_decay=0.1),
    # ALBERT paper, SST-2 (table 14): lr 1e-5, batch 32, 1256 warm-up steps of 20935 (6%); decay: default
    "albert": Recipe(lr=1e-5, warmup_ratio=0.06),
    # DistilBERT's GLUE fine-tuning ran transformers' run_glue defaults: lr 5e-5, no warm-up, no decay
    "distilbert": Recipe(lr=5e-5, warmup_ratio=0.0, weight_decay=0.0),
    # ELECTRA paper (table 7), base models: lr 1e-4, warm-up 10%, weight decay 0
    "electra": Recipe(lr=1e-4, warmup_ratio=0.1, weight_decay=0.0),
    # DeBERTa-v3-base, GLUE: lr 2e-5; warm-up and decay: default
    "deberta-v2": Recipe(lr=2e-5),
}
DEFAULT_RECIPE = Recipe(lr=2e-5)


def recipe_for(model_type: str | None) -> Recipe:
    return RECIPES.get(model_type or "", DEFAULT_RECIPE)


def recipes_help(field: str = "lr") -> str:
    """`bert 2e-05, roberta 2e-05, ...`: one field of every recipe, for --help."""
    return ", ".join(f"{name} {getattr(recipe, field):g}" for name, recipe in RECIPES.items())
