"""Which GPUs `bertq worker --gpus` starts a worker for: asked of nvidia-smi (the CLI never imports
torch), or given as indices."""

from __future__ import annotations

import subprocess

from bertq.errors import BertqError


def gpu_indices() -> list[str]:
    """The indices nvidia-smi lists, or [] without nvidia-smi or a GPU."""
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return (
        [line.strip() for line in listing.stdout.splitlines() if line.strip().isdigit()]
        if listing.returncode == 0
        else []
    )


def visible_gpus(wanted: str) -> list[str]:
    """`all` → every GPU nvidia-smi lists; `0,2` → those indices, each checked to exist."""
    found = gpu_indices()
    if wanted.strip() == "all":
        if not found:
            raise BertqError("--gpus all: nvidia-smi lists no GPU on this machine; run `bertq worker` (CPU) instead")
        return found
    asked = [part.strip() for part in wanted.split(",") if part.strip()]
    if not asked or not all(part.isdigit() for part in asked):
        raise BertqError(f"--gpus {wanted!r}: give all, or GPU indices separated by commas (0,1)")
    missing = [part for part in asked if part not in found]
    if missing:
        raise BertqError(
            f"--gpus {wanted}: no GPU {', '.join(missing)} here (nvidia-smi lists {', '.join(found) or 'none'})"
        )
    return asked
