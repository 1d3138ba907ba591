"""Pre-train: continue masked-LM training of an encoder on unlabelled text from its domain.

Reads top to bottom: spec, texts (through the bulk-inference readers, so every input format works),
a held-out slice, the masked-LM head, perplexity before, train (resumable), perplexity after, save.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling, set_seed

from bertq import sharding
from bertq.errors import BertqError
from bertq.pretraining import PretrainSpec
from bertq.worker.loading import best_device, load_tokenizer, load_with
from bertq.worker.runner import JobContext
from bertq.worker.training import (
    JobCallback,
    ScoringTrainer,
    attempt_dir,
    extra_callbacks,
    train_and_save,
    training_arguments,
)

HELDOUT_MASK_SEED = 20_240_601
"""The held-out texts are masked once, with this seed, so perplexity before and after is measured
on the same masked tokens."""


def read_texts(spec: PretrainSpec) -> list[str]:
    """Every text of the corpus, with the readers (and the checks) of bulk inference."""
    paths = sharding.expand_inputs(spec.corpus)
    shards = sharding.plan_shards(paths, shards=len(paths), text_column=spec.text_column, id_column=None)
    texts = [
        text for shard in shards for _, text in sharding.read_shard(shard, text_column=spec.text_column, id_column=None)
    ]
    return [text for text in texts if isinstance(text, str)]  # no pair column is read: every text is one string


def perplexity_scorer(texts: list[str], tokenizer: Any, collator: Any, *, max_length: int, device: str) -> Any:
    """exp(mean masked-LM loss) on `texts`, masked once (fixed seed) so every call scores the same tokens."""
    encoded = _encode(tokenizer, texts, max_length, whole_word=bool(getattr(collator, "whole_word_mask", False)))
    rows = [{key: encoded[key][i] for key in encoded} for i in range(len(texts))]
    batches = []
    with torch.random.fork_rng():
        torch.manual_seed(HELDOUT_MASK_SEED)
        for start in range(0, len(rows), 64):
            batches.append(collator([dict(row) for row in rows[start : start + 64]]))

    def score(model: Any) -> dict[str, float]:
        model.eval()
        loss_sum, tokens = 0.0, 0
        with torch.no_grad():
            for batch in batches:
                masked = int((batch["labels"] != -100).sum())
                if not masked:
                    continue
                output = model(**{key: value.to(device) for key, value in batch.items()})
                loss_sum += float(output.loss) * masked
                tokens += masked
        if not tokens:
            raise BertqError("the held-out texts have no maskable tokens; give a larger corpus")
        return {"perplexity": math.exp(loss_sum / tokens), "masked_tokens": float(tokens)}

    return score


def masking_collator(tokenizer: Any, *, mlm_probability: float, whole_word: bool) -> Any:
    """transformers' masked-LM collator; for whole words, one that also pads the offset mapping (which
    tells sub-tokens of one word apart), as transformers' own padding does not."""
    # Whole words are always replaced by [MASK] (transformers' whole-word masking has no random or
    # kept tokens); said here rather than left to its warning.
    collator = DataCollatorForLanguageModeling(
        tokenizer,
        mlm_probability=mlm_probability,
        whole_word_mask=whole_word,
        mask_replace_prob=1.0 if whole_word else 0.8,  # 0.8: BERT's 80% [MASK] (transformers' default)
        random_replace_prob=0.0 if whole_word else 0.1,  # BERT's 10% random tokens; none for whole words
    )
    if not whole_word:
        return collator

    def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
        offsets = [row.pop("offset_mapping") for row in rows]
        batch = tokenizer.pad(rows, return_tensors="pt")
        width = batch["input_ids"].shape[1]
        padded = [[tuple(pair) for pair in row] + [(0, 0)] * (width - len(row)) for row in offsets]
        special = batch.pop("special_tokens_mask", None)
        batch["input_ids"], batch["labels"] = collator.torch_mask_tokens(
            batch["input_ids"], special_tokens_mask=special, offset_mapping=torch.tensor(padded)
        )
        return batch

    collate.whole_word_mask = True  # type: ignore[attr-defined]
    return collate


def _encode(tokenizer: Any, texts: list[str], max_length: int, *, whole_word: bool) -> Any:
    """Token ids, and what the masking needs: which tokens are special, and (whole words) the offsets
    that tell which sub-tokens make a word."""
    return tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        return_special_tokens_mask=True,
        return_offsets_mapping=whole_word,
    )


def run_pretrain(spec_values: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    spec = PretrainSpec.from_dict(spec_values)
    device = best_device()
    set_seed(spec.seed)
    texts = read_texts(spec)
    random.Random(spec.seed).shuffle(texts)
    held = max(1, round(len(texts) * spec.heldout_fraction))
    heldout, train = texts[:held], texts[held:]
    ctx.log.info("pre-train %s on %d texts (%d held out), device %s", spec.model, len(train), len(heldout), device)

    tokenizer = load_tokenizer(spec.model_location)
    model = load_with(AutoModelForMaskedLM, spec.model_location)
    collator = masking_collator(tokenizer, mlm_probability=spec.mlm_probability, whole_word=spec.whole_word)
    score = perplexity_scorer(heldout, tokenizer, collator, max_length=spec.max_length, device=device)
    model.to(device)
    before = score(model)["perplexity"]
    ctx.metrics({"perplexity_before": before}, split="eval")
    ctx.log.info("held-out perplexity before: %.3f", before)

    from datasets import Dataset

    encoded = _encode(tokenizer, train, spec.max_length, whole_word=spec.whole_word)
    callback = JobCallback(ctx)
    trainer = ScoringTrainer(
        model=model,
        args=training_arguments(
            output_dir=attempt_dir(ctx),
            spec=spec,
            metric_for_best="perplexity",
            device=device,
            keep_columns=True,  # the collator reads special_tokens_mask (and offset_mapping for whole words)
            greater_is_better=False,
        ),
        train_dataset=Dataset.from_dict({key: list(value) for key, value in encoded.items()}),
        eval_dataset=heldout,  # scored by `score`, not by the Trainer's loop
        processing_class=tokenizer,
        data_collator=collator,
        callbacks=[callback, *extra_callbacks(spec)],
        scorer=score,
    )
    result = train_and_save(
        ctx, trainer, callback, score, tokenizer=tokenizer, spec_values=spec_values, phase="pre-training"
    )
    if result:  # rank 0 (or the only process)
        result["perplexity_before"] = before
        ctx.log.info("held-out perplexity: %.3f before, %.3f after", before, result.get("eval_perplexity", math.nan))
    return result
