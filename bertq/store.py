"""Object stores: any fsspec URL (s3://, gs://, az://, file://, ...) wherever bertq takes a path.

Credentials come from each store's usual environment and configuration (AWS_* variables and
~/.aws for S3, GOOGLE_APPLICATION_CREDENTIALS for GCS, ...), never from bertq's database. A URL is
used through a local copy:

- data and model folders named by URL are downloaded once into the local cache
  (`$BERTQ_HOME/cache/store`), keyed by the URL and the object's version (ETag, or size and time),
  and read from there by the same code as a local path;
- artifacts (checkpoints, job logs, teacher outputs) are written locally by the job, then uploaded
  to the artifact store (`BERTQ_ARTIFACTS=s3://bucket/prefix`) and recorded as URLs with size and
  sha256; a worker that needs one downloads it once into the cache, keyed by that sha256, and checks
  the digest before using it.

The cache is bounded (`BERTQ_CACHE_GB`, 20 GB): the least recently used entries are removed first.
A file lock per entry makes concurrent workers on one machine download it once.
fsspec is imported only when a URL is used.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bertq.errors import BertqError

_URL = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://", re.IGNORECASE)
PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
"""The package that serves each common scheme, for the message when it is missing."""


class StoreError(BertqError):
    """An object store cannot be used as asked; the message names the URL and the fix."""


def is_url(value: object) -> bool:
    return isinstance(value, str) and _URL.match(value) is not None and not value.startswith("hub:")


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for `url`, or StoreError naming the package to install."""
    scheme = url.split("://", 1)[0].lower()
    try:
        import fsspec

        return fsspec.core.url_to_fs(url)
    except ImportError as error:
        package = PACKAGES.get(scheme) or getattr(error, "name", None) or "the fsspec backend"
        raise StoreError(
            f"{url}: no filesystem for {scheme}:// is installed; pip install {package} on this machine"
        ) from None
    except ValueError as error:
        raise StoreError(f"{url}: {error}; fsspec knows no {scheme}:// filesystem") from None


def call(url: str, action: str, function: Any) -> Any:
    """Run a store operation and turn its failures into errors that name the URL and the fix."""
    try:
        return function()
    except StoreError:
        raise
    except FileNotFoundError:
        raise StoreError(f"{url}: no such object (or its bucket does not exist); check the URL") from None
    except PermissionError as error:
        raise StoreError(
            f"{url}: access denied while trying to {action} ({error}); check the credentials in this "
            "machine's environment (for S3: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws)"
        ) from None
    except Exception as error:
        if "credential" in str(error).lower():
            raise StoreError(
                f"{url}: no credentials to {action} ({type(error).__name__}); set them in this machine's "
                "environment (for S3: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or ~/.aws)"
            ) from None
        raise StoreTransient(f"{url}: could not {action}: {type(error).__name__}: {error}") from error


class StoreTransient(StoreError):
    """The store failed in a way that may pass (down, timed out): the job is retried, not failed."""


def join(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts)])


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return bool(call(url, "look it up", lambda: fs.exists(path)))


def upload(local: Path, url: str) -> None:
    """Copy a file, or a folder's files, to `url` (a folder becomes objects under `url/`)."""
    fs, path = filesystem(url)
    files = sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else [local]
    for file in files:
        target = f"{path.rstrip('/')}/{file.relative_to(local).as_posix()}" if local.is_dir() else path
        call(url, "upload to it", lambda f=file, t=target: fs.put_file(str(f), t))


def read_text(url: str) -> str:
    fs, path = filesystem(url)
    return call(url, "read it", lambda: fs.cat_file(path).decode("utf-8", errors="replace"))


def _version(url: str) -> tuple[str, bool]:
    """What changes when the object (or any object under a folder URL) changes, and whether it is a folder."""
    fs, path = filesystem(url)
    if call(url, "look it up", lambda: fs.isdir(path)):
        entries = call(url, "list it", lambda: fs.find(path, detail=True))
        parts = [f"{name}:{tag(info)}" for name, info in sorted(entries.items())]
        if not parts:
            raise StoreError(f"{url}: the folder is empty or does not exist; check the URL")
        return hashlib.sha256("|".join(parts).encode()).hexdigest(), True
    info = call(url, "look it up", lambda: fs.info(path))
    return tag(info), False


def tag(info: dict[str, Any]) -> str:
    return str(
        info.get("ETag") or info.get("etag") or f"{info.get('size')}:{info.get('LastModified') or info.get('mtime')}"
    )


def size_and_digest(path: Path) -> tuple[int, str]:
    """Size and sha256 of a file; for a folder, of its files' names and contents in order."""
    digest = hashlib.sha256()
    size = 0
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    return size, digest.hexdigest()


class LocalCache:
    """Downloaded objects on this machine, bounded in size, least recently used removed first."""

    def __init__(self, root: Path, max_bytes: int | None = None):
        self.root = root
        self.max_bytes = (
            max_bytes if max_bytes is not None else int(float(os.environ.get("BERTQ_CACHE_GB", "20")) * 2**30)
        )
        self.hits = 0
        self.misses = 0

    def data(self, url: str) -> Path:
        """A data file or model folder named by URL, as a local path (downloaded on first use, and
        again when the object changes)."""
        version, folder = _version(url)
        key = hashlib.sha256(f"{url}|{version}".encode()).hexdigest()[:32]
        name = url.rstrip("/").rsplit("/", 1)[-1] or "object"
        return self._entry(f"data-{key}", name, lambda target: self._download(url, target, folder))

    def artifact(self, url: str, sha256: str) -> Path:
        """An artifact the database recorded with `sha256`, as a local path; its digest is checked."""
        name = url.rstrip("/").rsplit("/", 1)[-1] or "artifact"

        def fetch(target: Path) -> None:
            fs, path = filesystem(url)
            self._download(url, target, bool(call(url, "look it up", lambda: fs.isdir(path))))
            got = size_and_digest(target)[1]
            if got != sha256:
                raise StoreError(
                    f"{url}: its content (sha256 {got[:12]}) is not what the job recorded ({sha256[:12]}); "
                    "the object was changed or replaced after it was written"
                )

        return self._entry(f"sha-{sha256}", name, fetch)

    def adopt(self, local: Path, url: str, sha256: str) -> None:
        """An artifact this machine just wrote and uploaded: entered into the cache by hard links (no
        second copy on disk), so its later use here is a hit, not a download of what is on disk."""
        name = url.rstrip("/").rsplit("/", 1)[-1] or "artifact"

        def link(target: Path) -> None:
            def hard_link(source: str, destination: str) -> None:
                try:
                    os.link(source, destination)
                except OSError:  # another filesystem: a copy
                    shutil.copy2(source, destination)

            if local.is_dir():
                shutil.copytree(local, target, copy_function=hard_link)
            else:
                hard_link(str(local), str(target))

        hits, misses = self.hits, self.misses
        self._entry(f"sha-{sha256}", name, link)
        self.hits, self.misses = hits, misses  # adopting is neither a hit nor a miss of a use

    # -- the entries ---------------------------------------------------------------------

    def _entry(self, key: str, name: str, fill: Any) -> Path:
        folder = self.root / key
        target = folder / name
        ready = folder / ".complete"
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked(key):
            if ready.is_file():
                self.hits += 1
                os.utime(folder)  # most recently used
                return target
            self.misses += 1
            partial = self.root / f".{key}.{os.getpid()}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            try:
                fill(partial / name)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            (partial / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
            shutil.rmtree(folder, ignore_errors=True)
            partial.rename(folder)
        self._evict(keep=folder)
        return target

    def _download(self, url: str, target: Path, folder: bool) -> None:
        fs, path = filesystem(url)
        if folder:
            entries = call(url, "list it", lambda: fs.find(path))
            base = path.rstrip("/") + "/"
            for entry in entries:
                local = target / entry[len(base) :] if entry.startswith(base) else target / Path(entry).name
                local.parent.mkdir(parents=True, exist_ok=True)
                call(url, "download it", lambda e=entry, t=local: fs.get_file(e, str(t)))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            call(url, "download it", lambda: fs.get_file(path, str(target)))

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        with open(self.root / f".{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _evict(self, keep: Path) -> None:
        entries = [p for p in self.root.iterdir() if p.is_dir() and (p / ".complete").is_file()]
        sizes = {p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in entries}
        total = sum(sizes.values())
        for entry in sorted(entries, key=lambda p: p.stat().st_mtime):
            if total <= self.max_bytes:
                break
            if entry == keep:
                continue
            with self._locked(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
            total -= sizes[entry]


_CACHES: dict[Path, LocalCache] = {}


def cache(home: Path | None = None) -> LocalCache:
    """This machine's cache (one per BERTQ_HOME and process, so hits and misses are counted)."""
    if home is None:
        from bertq.config import load_settings

        home = load_settings().home
    root = home / "cache" / "store"
    return _CACHES.setdefault(root, LocalCache(root))


def local_path(value: str, home: Path | None = None) -> Path:
    """A path or URL as a local path: a URL's local copy, a path as it is."""
    return cache(home).data(value) if is_url(value) else Path(value)
