"""Datasets on the Hugging Face Hub as bertq data: `hub:NAME[#CONFIG][:SPLIT]`.

    hub:nyu-mll/glue#sst2:validation      GLUE's sst2 configuration, its validation split
    hub:stanfordnlp/imdb:train[:5000]     the first 5000 rows of imdb's train split
    hub:rajpurkar/squad                   the train split

`#` separates the configuration because a Hub name may itself hold a `/` (`owner/name`). The split
takes `datasets`' slice syntax (`train[:5000]`, `train[10%:20%]`).

The dataset is loaded with `datasets.load_dataset`: from the Hugging Face cache when it is there
(so a second run, and a machine with HF_HUB_OFFLINE=1 and a filled cache, need no network), else
from the Hub. It is then written once, as JSONL, into a local file (`local_copy`), and from there on
it is read by the same code as a local file: at submit, where the CLI checks it, and on the worker,
which makes its own copy from its own cache (the same dataset gives the same bytes). Columns that are
a `ClassLabel` keep their ids, and their names become the label names; a sequence of `ClassLabel`
(NER tags) is written as the tag names, which is what the NER reader reads.

`datasets` is imported only when a `hub:` source is used (it does not import torch).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertq.errors import BertqError

PREFIX = "hub:"
_NAME = r"[A-Za-z0-9][\w.-]*(?:/[A-Za-z0-9][\w.-]*)?"
_PATTERN = re.compile(rf"^(?:hub:)?(?P<name>{_NAME})(?:#(?P<config>[\w.-]+))?(?::(?P<split>[\w.\[\]%:+-]+))?$")


class HubDataError(BertqError):
    """A Hub dataset that cannot be used as asked; the message names it and the fix."""


@dataclass(frozen=True)
class HubData:
    name: str
    """The dataset's repository, `owner/name` (or a bare legacy name such as `imdb`)."""
    config: str | None = None
    """The configuration (GLUE's `sst2`), for datasets that have several."""
    split: str = "train"
    """The split, with an optional slice: `train`, `validation[:500]`."""

    @classmethod
    def parse(cls, value: str) -> HubData:
        match = _PATTERN.match(value)
        if match is None or ".." in value:
            raise HubDataError(
                f"{value!r} is not a Hub dataset: write hub:OWNER/NAME[#CONFIG][:SPLIT], e.g. "
                "hub:nyu-mll/glue#sst2:validation or hub:stanfordnlp/imdb:train[:5000]"
            )
        return cls(match["name"], match["config"], match["split"] or "train")

    def __str__(self) -> str:
        return f"{PREFIX}{self.name}" + (f"#{self.config}" if self.config else "") + f":{self.split}"

    @property
    def words(self) -> str:
        """How messages name it: `nyu-mll/glue (config sst2), split train`."""
        return f"{self.name}" + (f" (config {self.config})" if self.config else "") + f", split {self.split}"


def is_hub(value: str | None) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


@dataclass(frozen=True)
class LocalCopy:
    source: HubData
    path: Path
    """The JSONL file the dataset was written to."""
    label_names: dict[str, dict[str, str]]
    """ClassLabel columns: column → {id as text: name}."""
    rows: int


def local_copy(value: str, root: Path) -> LocalCopy:
    """The Hub dataset `value` as a local JSONL file under `root/hub-data`, written on first use."""
    source = HubData.parse(value)
    dataset = _load(source)
    _check_slice(source, dataset)
    label_names = {
        column: {str(i): name for i, name in enumerate(feature.names)}
        for column, feature in dataset.features.items()
        if type(feature).__name__ == "ClassLabel"
    }
    folder = root / "hub-data"
    slug = re.sub(r"[^\w.-]+", "_", f"{source.name}#{source.config or ''}:{source.split}")
    digest = hashlib.sha256(f"{dataset._fingerprint}".encode()).hexdigest()[:16]
    path = folder / f"{slug}-{digest}.jsonl"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        convert = _converters(dataset.features)
        with open(partial, "w", encoding="utf-8") as handle:
            for row in dataset:
                handle.write(json.dumps({k: convert[k](v) for k, v in row.items()}, ensure_ascii=False) + "\n")
        partial.replace(path)
    return LocalCopy(source, path, label_names, len(dataset))


def default_root() -> Path:
    """Where this machine keeps its copies: BERTQ_HOME (the CLI's and the worker's own)."""
    from bertq.config import load_settings

    return load_settings().home


def local_path(value: str, root: Path | None = None) -> Path:
    """A data source as a local file: a Hub dataset's local copy, an object-store URL's local copy
    (`bertq.store`), or the path itself."""
    if is_hub(value):
        return local_copy(value, root or default_root()).path
    from bertq import store

    return store.local_path(value, root)


_SLICE = re.compile(r"^(?P<base>[\w.-]+)\[(?P<start>-?\d*)(?::(?P<end>-?\d*))?\]$")


def _check_slice(source: HubData, dataset: Any) -> None:
    """`datasets` clamps a slice past the end of a split; a slice asking for rows the split does not
    have is refused instead, so `train[:50000]` of a 10 000-row split is not silently 10 000 rows."""
    match = _SLICE.match(source.split)
    splits = getattr(dataset.info, "splits", None) or {}
    if match is None or match["base"] not in splits:
        return
    total = splits[match["base"]].num_examples
    bounds = [int(b) for b in (match["start"], match["end"]) if b and not b.startswith("-")]
    if any(b > total for b in bounds) or len(dataset) == 0:
        raise HubDataError(
            f"Hub dataset {source.words}: the split {match['base']} has {total} rows, so "
            f"{source.split} asks for rows it does not have; use a slice within 0..{total}"
        )


def _converters(features: Any) -> dict[str, Any]:
    """Per column: ClassLabel ids stay ids; a sequence of ClassLabel becomes the names (NER tags)."""

    def keep(value: Any) -> Any:
        return value

    def names_of(feature: Any) -> Any:
        inner: Any = feature[0] if isinstance(feature, list) and feature else getattr(feature, "feature", None)
        if type(inner).__name__ == "ClassLabel":
            return lambda values: [inner.int2str(v) for v in values]
        return keep

    return {column: names_of(feature) for column, feature in features.items()}


def _load(source: HubData) -> Any:
    try:
        import datasets
    except ImportError as error:  # pragma: no cover - datasets is a dependency
        raise HubDataError("Hub datasets need the `datasets` package: pip install datasets") from error
    datasets.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    if not offline:
        # Ask the Hub first, with a short timeout: `datasets` would retry for half a minute before
        # giving up. Unreachable: read the cache only (offline mode, for this load).
        from bertq.hub import HubNotFound, HubUnreachable, fetch_json

        try:
            fetch_json(f"api/datasets/{source.name}")
        except HubNotFound:
            raise HubDataError(
                f"Hub dataset {source.words}: the Hugging Face Hub has no public dataset {source.name!r}; check the "
                "name on https://huggingface.co/datasets, or give a local file"
            ) from None
        except HubUnreachable:
            offline = True
    try:
        with _offline(offline):
            # The cache folder is read from the environment now, not when `datasets` was imported.
            return datasets.load_dataset(source.name, source.config, split=source.split, cache_dir=_cache_dir())
    except ValueError as error:
        text = str(error)
        if "Couldn't find cache" in text:
            raise HubDataError(
                f"Hub dataset {source.words} is not in the local Hugging Face cache ({_cache_dir()}) and "
                f"the Hub is unreachable ({_first_line(text)}); load it once on a machine with a network "
                f"and the same HF_HOME, or give a local file instead"
            ) from None
        if "Unknown split" in text:
            raise HubDataError(f"Hub dataset {source.words}: {_first_line(text)}; give one of them after ':'") from None
        if "Config name is missing" in text or "BuilderConfig" in text or "config" in text.lower():
            raise HubDataError(
                f"Hub dataset {source.words}: {_first_line(text)}; name the configuration after '#', "
                f"e.g. hub:{source.name}#CONFIG:{source.split}"
            ) from None
        raise HubDataError(f"Hub dataset {source.words}: {_first_line(text)}") from None
    except KeyError as error:
        raise HubDataError(
            f"Hub dataset {source.words}: no split {error}; give one of its splits after ':' "
            "(e.g. :train, :validation, :test)"
        ) from None
    except (ConnectionError, FileNotFoundError, OSError) as error:
        where = (
            "the Hugging Face Hub is unreachable (or HF_HUB_OFFLINE is set)"
            if offline
            else "the Hugging Face Hub has no such dataset"
        )
        raise HubDataError(
            f"Hub dataset {source.words} cannot be loaded: {where}, and it is not in the local Hugging Face "
            f"cache ({_cache_dir()}). On a machine with a network, load it once with the same HF_HOME: "
            f'python -c "import datasets; datasets.load_dataset({source.name!r}, {source.config!r})" '
            "(then copy that cache here), or give a local file instead "
            f"({_first_line(str(error))})"
        ) from None
    except Exception as error:
        if type(error).__name__ in {"DatasetNotFoundError", "DataFilesNotFoundError", "EmptyDatasetError"}:
            raise HubDataError(
                f"Hub dataset {source.words}: {_first_line(str(error))}; check the name on "
                "https://huggingface.co/datasets"
            ) from None
        raise


@contextlib.contextmanager
def _offline(offline: bool) -> Iterator[None]:
    """`datasets` and `huggingface_hub` in offline mode (cache only) for the duration, when asked."""
    if not offline:
        yield
        return
    import datasets
    import huggingface_hub.constants as hub_constants

    saved = (datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _first_line(text: str) -> str:
    return (text.strip().splitlines()[0] if text.strip() else text).rstrip(".")


def _cache_dir() -> str:
    return os.environ.get("HF_DATASETS_CACHE") or str(
        Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "datasets"
    )
