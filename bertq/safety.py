"""Where jobs may read and write: the allowed roots, checked at submit time and again in the task.

A job's spec names files: data to read, a model folder to load, a folder to write outputs into.
The worker acts on whatever spec the database holds, and the message that points it there could be
forged, so the same check runs in the CLI (before anything is enqueued) and in the worker (before
the job touches a file). A path is accepted when, with every symlink resolved, it lies inside one of
the allowed roots (`BERTQ_ALLOWED_ROOTS`; by default your home, the temporary folder, BERTQ_HOME and
the artifact root). Model folders may also come from the places bertq itself resolves aliases to
(the `minilm` package, the Hugging Face cache). Standard library only: the CLI imports it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bertq import store
from bertq.config import Settings
from bertq.errors import BertqError, SpecError
from bertq.formats import is_hub_dataset_name

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
OUTPUT_FORMATS = ("jsonl", "parquet")


class UnsafePath(BertqError):
    """A path outside the allowed roots, through a symlink that leaves them, or malformed."""


def allowed_roots(settings: Settings) -> list[Path]:
    return [*settings.allowed_roots, settings.home, settings.artifacts]


def model_roots(settings: Settings) -> list[Path]:
    """Where model folders may also live: what aliases resolve to, and the Hugging Face cache."""
    from bertq.models import hub_cache_dir, minilm_folder

    roots = allowed_roots(settings)
    folder = minilm_folder()
    if folder is not None:
        roots.append(folder)
    roots.append(hub_cache_dir())
    return roots


def _inside(path: Path, roots: list[Path]) -> bool:
    resolved_roots = [root.resolve() for root in roots]
    return any(path == root or path.is_relative_to(root) for root in resolved_roots)


def _shown(roots: list[Path]) -> list[str]:
    """The roots as a refusal lists them: each once, and none that lies inside another."""
    resolved = list(dict.fromkeys(root.resolve() for root in roots))
    return [str(r) for r in resolved if not any(r != other and r.is_relative_to(other) for other in resolved)]


def check_path(value: Any, *, what: str, roots: list[Path]) -> Path:
    """The path a stored spec names, resolved, if it is inside `roots`; raise UnsafePath otherwise.

    Stored specs hold absolute, normalised paths only (the CLI resolves what the user typed), so a
    relative path or a `..` segment there is a sign of tampering, not a typo."""
    if not isinstance(value, str) or not value:
        raise UnsafePath(f"{what}: expected a path, got {value!r}")
    if "\x00" in value:
        raise UnsafePath(f"{what} {value!r} contains a NUL byte; give a plain file name")
    try:
        raw = Path(value).expanduser()
        if not raw.is_absolute() or ".." in raw.parts:
            raise UnsafePath(f"{what} {value!r} is not an absolute, normalised path; a stored spec never holds one")
        resolved = raw.resolve()
    except (OSError, RuntimeError, ValueError) as error:  # a symlink loop, ~nosuchuser
        raise UnsafePath(f"{what} {value!r} cannot be resolved ({error}); give a plain path") from error
    if not _inside(resolved, roots):
        via = f" (a symlink leads to {resolved})" if resolved != Path(os.path.abspath(raw)) else ""
        raise UnsafePath(
            f"{what} {value!r}{via} is outside the allowed roots ({', '.join(_shown(roots))}); "
            "move it under one of them, or add its folder to BERTQ_ALLOWED_ROOTS (separated by ':') "
            "for both the CLI and the workers"
        )
    return resolved


def _path_values(spec: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(role, field, value) for every path a spec names: role is model, data or output. Which
    fields name paths is declared on the spec dataclasses (`specs.path_field`)."""
    from bertq.jobkinds import all_path_fields

    for key, role in all_path_fields().items():
        value = spec.get(key)
        if value is None:
            continue
        if role == "shard":
            if isinstance(value, dict) and "path" in value:
                yield "data", f"{key}.path", value["path"]
        elif role == "data" and isinstance(value, list):
            for index, item in enumerate(value):
                yield "data", f"{key}[{index}]", item
        else:
            yield role, key, value


def spec_problems(specs: dict[str, Any] | list[dict[str, Any]], settings: Settings) -> list[str]:
    """Every path of a spec (or of the specs of one submitted plan) that a job must not touch, each
    with the fix: one line per path, naming every field that names it."""
    specs = specs if isinstance(specs, list) else [specs]
    problems = list(dict.fromkeys(p for spec in specs for p in _choice_problems(spec)))
    roots = {"model": model_roots(settings), "data": allowed_roots(settings), "output": allowed_roots(settings)}
    refused: dict[str, tuple[list[str], str]] = {}  # value -> (the fields naming it, the refusal after the name)
    for role, key, value in (path for spec in specs for path in _path_values(spec)):
        if store.is_url(value) and not str(value).lower().startswith("file://"):
            continue  # an object store: reached with this machine's credentials, no local path to check
        if isinstance(value, str) and value.lower().startswith("file://"):
            value = value[len("file://") :]
        if role == "model" and isinstance(value, str) and HUB_ID.match(value) and not Path(value).exists():
            continue  # a hub id (transformers would load a relative folder of that name instead: checked as a path)
        if role == "data" and isinstance(value, str) and value.startswith("hub:"):
            problem = _hub_dataset_problem(key, value)
            problems.extend([problem] if problem else [])
            continue
        try:
            check_path(value, what=key, roots=roots[role])
        except UnsafePath as error:
            fields, _ = refused.setdefault(str(value), ([], str(error).removeprefix(key)))
            fields.extend([key] if key not in fields else [])
    # A file named by two fields (a fine-tune's eval is also its evaluate job's data) is one line.
    problems.extend(" and ".join(fields) + rest for fields, rest in refused.values())
    return problems


def _hub_dataset_problem(key: str, value: str) -> str | None:
    """`hub:NAME[:SPLIT]` names a Hub dataset; `datasets` would load a local folder of that name
    instead, so a name that is a path here is refused."""
    name = value.removeprefix("hub:").split(":", 1)[0]
    if not is_hub_dataset_name(value, prefixed=True) or ".." in name.split("/") or Path(name).expanduser().exists():
        return f"{key} {value!r} is not a Hub dataset id (hub:OWNER/NAME[:SPLIT]); give a local file inside the allowed roots"
    return None


def _choice_problems(spec: dict[str, Any]) -> list[str]:
    """Fields that become parts of file names must be one of their few values."""
    fmt = spec.get("format")
    if fmt is not None and fmt not in OUTPUT_FORMATS:
        return [f"format {fmt!r}: choose jsonl or parquet"]
    return []


def check_spec(spec: dict[str, Any], settings: Settings) -> None:
    problems = spec_problems(spec, settings)
    if problems:
        raise SpecError(problems)


def check_output_folder(folder: str, settings: Settings) -> Path:
    """The output folder, resolved, checked again right before a job writes into it (it may have been
    swapped for a symlink since the job started); write to what this returns."""
    return check_path(folder, what="output", roots=allowed_roots(settings))


def check_job_folder(folder: Path, settings: Settings) -> Path:
    """A job's folder under the artifact root, refused if a symlink takes it elsewhere."""
    resolved = folder.resolve()
    root = settings.artifacts.resolve()
    if not resolved.is_relative_to(root):
        raise UnsafePath(
            f"the job folder {folder} leads to {resolved}, outside the artifact root {root}; "
            "remove that symlink (bertq never writes outside its roots)"
        )
    return resolved
