"""The result cache of bulk inference: a record's result is a pure function of (model weights, task
settings, precision, text), so a text seen before under the same key is not run through the model.

Layout, in the artifact store (or BERTQ_HOME/result-cache on one machine without a store):

    result-cache/<model key>/part-<job>-<shard>-a<attempt>.parquet   columns: text (sha256), result (JSON)

The model key hashes the weights' digest, the task and every setting that changes outputs, and the
precision the shard runs in: new weights, another precision, other labels or options miss by
construction. Each shard adds one new file, written whole and then renamed (or uploaded as one
object), after its output was committed: concurrent shards never write the same file, and a worker
killed while adding leaves at most a temporary file that readers skip. A result is stored as the
JSON text the output would hold, so an output built from hits is byte for byte what a run without
the cache writes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertq import store
from bertq.config import Settings
from bertq.sharding import Text

OUTPUT_SETTINGS = ("task", "all_scores", "normalize", "labels", "question", "pair_column", "max_length")
"""Spec fields that change a record's result (besides the weights, the precision and the text)."""


def text_key(text: Text) -> str:
    """The digest of a record's text; a pair's is of both texts, and never equals a single text's."""
    if isinstance(text, tuple):
        return hashlib.sha256(("\x00pair\x00" + json.dumps(list(text), ensure_ascii=False)).encode("utf-8")).hexdigest()
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_root(settings: Settings) -> str:
    if settings.artifact_store:
        return store.join(settings.artifact_store, "result-cache")
    return str(settings.home / "result-cache")


def model_digest(location: str) -> str:
    """sha256 of the model folder's weights and configuration (not its tokenizer's README)."""
    folder = Path(location)
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.is_file() and path.suffix in (".safetensors", ".bin", ".json", ".txt", ".model"):
            digest.update(path.name.encode() + b"\0" + store.size_and_digest(path)[1].encode())
    return digest.hexdigest()


@dataclass
class ResultCache:
    root: str
    key: str
    """The model key: weights, settings and precision."""

    @classmethod
    def open(cls, settings: Settings, spec: Any, weights: str, precision: str) -> ResultCache:
        settings_part = json.dumps({name: getattr(spec, name) for name in OUTPUT_SETTINGS}, sort_keys=True)
        key = hashlib.sha256(f"{weights}|{settings_part}|{precision}".encode()).hexdigest()[:40]
        return cls(cache_root(settings), key)

    @property
    def folder(self) -> str:
        return store.join(self.root, self.key) if store.is_url(self.root) else os.path.join(self.root, self.key)

    def lookup(self, texts: list[Text]) -> dict[int, str]:
        """Index → the stored result JSON, for the texts that have one."""
        stored = self._load()
        found = {}
        for index, text in enumerate(texts):
            hit = stored.get(text_key(text))
            if hit is not None:
                found[index] = hit
        return found

    def add(self, results: dict[str, str], name: str) -> None:
        """Store text digest → result JSON as one new file `name` (written whole, then published)."""
        if not results:
            return
        import tempfile

        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"text": list(results), "result": list(results.values())})
        if store.is_url(self.root):
            with tempfile.TemporaryDirectory() as scratch:
                local = Path(scratch) / name
                pq.write_table(table, local)
                store.upload(local, store.join(self.folder, name))
            return
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{name}.partial"
        pq.write_table(table, partial)
        os.replace(partial, folder / name)

    def _load(self) -> dict[str, str]:
        import pyarrow.parquet as pq

        stored: dict[str, str] = {}
        for source in self._files():
            table = pq.read_table(source, columns=["text", "result"])
            stored.update(zip(table.column("text").to_pylist(), table.column("result").to_pylist()))
        return stored

    def _files(self) -> list[Any]:
        if store.is_url(self.root):
            fs, path = store.filesystem(self.folder)
            names = store.call(self.folder, "list it", lambda: fs.glob(f"{path}/part-*.parquet"))
            return [fs.open(name, "rb") for name in sorted(names)]
        folder = Path(self.folder)
        return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []


def _decision_location(settings: Settings, spec: Any, weights: str, device_name: str) -> str:
    key = ResultCache.open(settings, spec, weights, f"auto@{device_name}").key
    root = cache_root(settings)
    return (
        store.join(root, "decisions", f"{key}.json")
        if store.is_url(root)
        else os.path.join(root, "decisions", f"{key}.json")
    )


def stored_decision(settings: Settings, spec: Any, weights: str, device_name: str) -> dict[str, Any] | None:
    """The `--precision auto` decision an earlier shard made for this model on this kind of device.
    Every shard and every night then runs (and caches) in one precision: a decision made per shard
    from its own sample could differ between shards and split the cache in two."""
    where = _decision_location(settings, spec, weights, device_name)
    try:
        text = store.read_text(where) if store.is_url(where) else Path(where).read_text(encoding="utf-8")
    except (OSError, store.StoreError):
        return None
    return dict(json.loads(text))


def store_decision(settings: Settings, spec: Any, weights: str, device_name: str, decision: dict[str, Any]) -> None:
    where = _decision_location(settings, spec, weights, device_name)
    if store.is_url(where):
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            local = Path(scratch) / "decision.json"
            local.write_text(json.dumps(decision), encoding="utf-8")
            store.upload(local, where)
        return
    Path(where).parent.mkdir(parents=True, exist_ok=True)
    partial = Path(f"{where}.{os.getpid()}.partial")
    partial.write_text(json.dumps(decision), encoding="utf-8")
    os.replace(partial, where)


def stats(settings: Settings) -> list[dict[str, Any]]:
    """Per model key: files, entries and bytes (for `bertq cache stats`)."""
    import pyarrow.parquet as pq

    root = cache_root(settings)
    rows = []
    if store.is_url(root):
        fs, path = store.filesystem(root)
        entries = store.call(root, "list it", lambda: fs.glob(f"{path}/*/part-*.parquet", detail=True))
        for name, info in sorted(entries.items()):
            key = name.rsplit("/", 2)[-2]
            with fs.open(name, "rb") as handle:
                count = pq.ParquetFile(handle).metadata.num_rows
            rows.append({"key": key, "file": name, "entries": count, "bytes": int(info.get("size") or 0)})
    else:
        for file in sorted(Path(root).glob("*/part-*.parquet")):
            rows.append(
                {"key": file.parent.name, "file": str(file), "entries": pq.ParquetFile(file).metadata.num_rows,
                 "bytes": file.stat().st_size}
            )  # fmt: skip
    return rows
