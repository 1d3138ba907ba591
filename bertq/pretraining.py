"""`bertq submit pretrain`: continued masked-LM pre-training on a domain's unlabelled text.

The tutorial's answer to "domain-specific text" is RoBERTa plus continued pre-training. The job
masks tokens dynamically (a new mask every time a text is seen; whole words with `whole_word`),
measures held-out perplexity before and after with one fixed masking, and saves a checkpoint that
`finetune` and `distill` take as a model. Standard library and the spec modules only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bertq import sharding
from bertq.errors import BertqError, SpecError
from bertq.models import resolve_model
from bertq.specs import TrainingKnobs, _check_numbers, training_knobs

MASKED_LM_METRICS = ("perplexity",)


@dataclass(frozen=True)
class PretrainSpec(TrainingKnobs):
    """Pre-training keeps the epoch with the lowest held-out perplexity (`metric_for_best` stays unset)."""

    model: str
    """The model as given: an alias, a hub id or a folder."""
    model_location: str = field(metadata={"path": "model"})
    corpus: list[str] = field(metadata={"path": "data"})
    """The unlabelled text: plain text (a line a text), JSONL, CSV/TSV (a text column) or Parquet files."""
    text_column: str | None = None
    """JSONL/CSV/TSV/Parquet: the column holding the text [guessed: text, sentence, ...]."""
    heldout_fraction: float = 0.05
    """Share of the texts held out (by seed) to measure perplexity before and after."""
    mlm_probability: float = 0.15
    """Share of tokens masked (BERT's 15%: of those 80% [MASK], 10% random, 10% kept)."""
    whole_word: bool = False
    """Mask whole words (all the sub-tokens of a word together, each replaced by [MASK]) instead of
    single tokens."""
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 5e-5
    gpus: int = 1
    max_length: int = 128
    seed: int = 42
    trust_remote_code: bool = False
    allow_pickle: bool = False


def build_pretrain_spec(
    *,
    model: str,
    corpus: list[str],
    text_column: str | None = None,
    heldout_fraction: float = PretrainSpec.heldout_fraction,
    mlm_probability: float = PretrainSpec.mlm_probability,
    whole_word: bool = False,
    epochs: float = PretrainSpec.epochs,
    max_steps: int | None = None,
    batch_size: int = PretrainSpec.batch_size,
    lr: float = PretrainSpec.lr,
    max_length: int = PretrainSpec.max_length,
    seed: int = PretrainSpec.seed,
    gpus: int = 1,
    knobs: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> PretrainSpec:
    problems: list[str] = []
    _check_numbers(
        problems, epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, max_length=max_length, gpus=gpus
    )
    if not 0 < heldout_fraction < 0.5:
        problems.append(f"--heldout-fraction must be above 0 and below 0.5 (got {heldout_fraction}); 0.05 is usual")
    if not 0 < mlm_probability < 1:
        problems.append(f"--mlm-probability must be above 0 and below 1 (got {mlm_probability}); 0.15 is BERT's")
    location = None
    config: dict[str, Any] = {}
    try:
        ref = resolve_model(model)
        location, config = ref.location, ref.config
        problems.extend(ref.loading_problems(trust_remote_code=trust_remote_code, allow_pickle=allow_pickle))
        if ref.max_length is not None and max_length > ref.max_length:
            problems.append(f"--max-length {max_length} is longer than {model!r} accepts ({ref.max_length} tokens)")
    except BertqError as error:
        problems.append(str(error))
    given = dict(knobs or {})
    if given.pop("metric_for_best", None):
        problems.append("--metric-for-best: pre-training keeps the epoch with the lowest held-out perplexity")
    resolved = training_knobs(given, config, MASKED_LM_METRICS, problems)
    sources: list[str] = []
    try:
        samples = sharding.sample_inputs(corpus, text_column=text_column, id_column=None, on_bad_line="fail")
        sources = [s.name for s in samples]
        if all(s.whole for s in samples) and sum(s.records for s in samples) < 20:
            problems.append(
                f"--corpus has {sum(s.records for s in samples)} texts; pre-training needs more (and some held out)"
            )
    except BertqError as error:
        problems.append(f"--corpus: {error}")
    if problems:
        raise SpecError(problems)
    assert location is not None
    return PretrainSpec(
        model=model,
        model_location=location,
        corpus=sources,
        text_column=text_column,
        heldout_fraction=heldout_fraction,
        mlm_probability=mlm_probability,
        whole_word=whole_word,
        epochs=float(epochs),
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        max_length=max_length,
        seed=seed,
        gpus=gpus,
        trust_remote_code=trust_remote_code,
        allow_pickle=allow_pickle,
        **resolved,
    )
