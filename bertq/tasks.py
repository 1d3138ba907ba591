"""Bulk-inference batch sizes, for the CLI and the worker (standard library only).

The job kinds are in `bertq.jobkinds`; the task families and their `--task` presets in
`bertq.families` (`FAMILIES`, `PRESETS`); the bulk-inference tasks in `bertq.infer_tasks`.
"""

from __future__ import annotations

DEFAULT_TOKEN_BUDGET = {"cpu": 2048, "cuda": 65536}
"""Bulk inference tokens per batch: small batches suit a CPU's caches; a GPU wants tens of thousands."""
