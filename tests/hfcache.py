"""A local Hugging Face cache, filled as an online run would leave it, for tests that run offline.

This machine cannot reach the Hub, so the tests put tiny models and small slices of the real
datasets (from ../shared/data) where `transformers` and `datasets` look for them with
HF_HUB_OFFLINE=1: models as snapshots in the Hub cache (HF_HOME/hub/models--NAME/...), datasets as
the prepared Arrow files in the datasets cache (HF_HOME/datasets/OWNER___NAME/CONFIG/...). What
bertq does with them is the real code path; only the download is skipped.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any


def cache_model(hf_home: Path, hub_id: str, folder: Path) -> Path:
    """Copy a saved model folder into the Hub cache as the snapshot of `hub_id`'s main branch."""
    repo = hf_home / "hub" / f"models--{hub_id.replace('/', '--')}"
    commit = hashlib.sha1(hub_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    if snapshot.exists():
        shutil.rmtree(snapshot)
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def cache_dataset(
    hf_home: Path, repo_id: str, config: str | None, splits: dict[str, list[dict[str, Any]]], features: Any
) -> Path:
    """Write `splits` (rows per split) as the prepared cache of `load_dataset(repo_id, config)`."""
    from datasets import Dataset, DatasetInfo, SplitDict, SplitInfo
    from datasets.arrow_writer import ArrowWriter

    namespace, _, name = repo_id.rpartition("/")
    root = hf_home / "datasets" / "___".join(p for p in (namespace, name) if p)
    folder = root / (config or "default") / "0.0.0" / hashlib.sha1(repo_id.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    split_dict = SplitDict(dataset_name=name)
    for split, rows in splits.items():
        table = Dataset.from_list(rows, features=features).data.table
        path = folder / f"{name}-{split}.arrow"
        with ArrowWriter(path=str(path), features=features) as writer:
            writer.write_table(table)
            count, size = writer.finalize()
        split_dict.add(SplitInfo(name=split, num_bytes=size, num_examples=count, dataset_name=name))
    DatasetInfo(
        dataset_name=name, config_name=config or "default", features=features, splits=split_dict
    ).write_to_directory(str(folder))
    return folder
