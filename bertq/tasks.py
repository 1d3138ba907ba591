"""Job kinds and bulk-inference batch sizes, for the CLI and the Celery app (standard library only).

The task families and their `--task` presets are in `bertq.families` (`FAMILIES`, `PRESETS`): one
module per family, named apart from the Celery tasks of `bertq.worker.tasks`.
"""

from __future__ import annotations

DEFAULT_TOKEN_BUDGET = {"cpu": 2048, "cuda": 65536}
"""Bulk inference tokens per batch: small batches suit a CPU's caches; a GPU wants tens of thousands."""
JOB_KINDS = ("finetune", "evaluate", "distill", "teacher_outputs", "student", "infer", "infer_shard")
"""The kinds of job a worker runs; each is a Celery task `bertq.<kind>`."""
