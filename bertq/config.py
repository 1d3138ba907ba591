"""Settings from environment variables, with defaults that work on a fresh machine.

Every setting is one `BERTQ_*` variable. Nothing here imports more than the standard library, so
the CLI can read its configuration instantly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

# Defaults, named so that a reader can find and change them in one place.
DEFAULT_HOME = "~/.bertq"
DEFAULT_LEASE_SECONDS = 120.0
"""A running attempt owns its job this long after its last heartbeat."""
DEFAULT_HEARTBEAT_SECONDS = 10.0
"""How often a running attempt renews its lease and checks it is still current."""
DEFAULT_MAX_ATTEMPTS = 3
"""Attempts before a job that keeps failing (or killing its worker) is marked FAILED."""
DEFAULT_VISIBILITY_TIMEOUT = 3600.0
"""Seconds before Redis redelivers an unacknowledged message. The database lease, not this,
decides who runs a job; redelivery only recovers lost work."""
DEFAULT_RETRY_DELAY_SECONDS = 30.0
"""Wait before retrying an attempt that hit a passing fault (disk full, database unavailable)."""
DEFAULT_DB_BUSY_SECONDS = 30.0
"""SQLite busy timeout: how long a write waits for another writer's lock."""


def default_allowed_roots() -> tuple[Path, ...]:
    """Your home folder and the temporary folder (BERTQ_HOME and the artifact root always count)."""
    import tempfile

    return (Path.home(), Path(tempfile.gettempdir()))


@dataclass(frozen=True)
class Settings:
    home: Path
    """Folder for bertq's own state: the SQLite database, the embedded Redis, artifacts."""
    database_url: str
    """SQLAlchemy URL; SQLite in `home` by default, `postgresql+psycopg://...` in production."""
    broker_url: str | None
    """Redis URL; None means the embedded Redis server that bertq starts in `home`."""
    artifacts: Path
    """Where jobs write checkpoints, logs and outputs: the artifact root, or, when `artifact_store`
    is set, this machine's staging folder (BERTQ_HOME/artifacts) before the upload."""
    lease_seconds: float
    heartbeat_seconds: float
    max_attempts: int
    visibility_timeout: float
    allowed_roots: tuple[Path, ...] = ()
    """Folders jobs may read data and models from and write outputs into (besides `home` and
    `artifacts`); checked at submit time and again by the worker."""
    retry_delay_seconds: float = DEFAULT_RETRY_DELAY_SECONDS
    """How long a job whose attempt hit a passing fault (disk full, database away) waits before
    its next attempt."""
    db_busy_seconds: float = DEFAULT_DB_BUSY_SECONDS
    """SQLite: how long a write waits for another writer's lock before failing ("database is locked")."""
    artifact_store: str | None = None
    """BERTQ_ARTIFACTS as an object-store URL (s3://bucket/prefix, gs://..., file://...): artifacts are
    uploaded there and recorded as URLs, so no two machines need a disk in common."""

    @property
    def uses_embedded_redis(self) -> bool:
        return self.broker_url is None

    def as_env(self) -> dict[str, str]:
        """These settings as BERTQ_* variables, for a child process that must use the same ones."""
        env = {
            "BERTQ_HOME": str(self.home),
            "BERTQ_DATABASE_URL": self.database_url,
            "BERTQ_ARTIFACTS": self.artifact_store or str(self.artifacts),
            "BERTQ_LEASE_SECONDS": str(self.lease_seconds),
            "BERTQ_HEARTBEAT_SECONDS": str(self.heartbeat_seconds),
            "BERTQ_MAX_ATTEMPTS": str(self.max_attempts),
            "BERTQ_VISIBILITY_TIMEOUT": str(self.visibility_timeout),
            "BERTQ_ALLOWED_ROOTS": os.pathsep.join(str(p) for p in self.allowed_roots),
            "BERTQ_RETRY_DELAY_SECONDS": str(self.retry_delay_seconds),
            "BERTQ_DB_BUSY_SECONDS": str(self.db_busy_seconds),
        }
        if self.broker_url:
            env["BERTQ_BROKER_URL"] = self.broker_url
        return env

    def public_dict(self) -> dict[str, object]:
        """The settings as `bertq config` shows them, with passwords masked."""
        values: dict[str, object] = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        values["allowed_roots"] = [str(p) for p in self.allowed_roots]
        values["database_url"] = mask_password(self.database_url)
        values["broker_url"] = (
            mask_password(self.broker_url) if self.broker_url else "embedded (started by bertq on 127.0.0.1)"
        )
        return values


def mask_password(url: str) -> str:
    """`redis://:secret@host/0` -> `redis://:***@host/0`."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `env` (default: this process's environment)."""
    env = os.environ if env is None else env

    def number(name: str, default: float) -> float:
        raw = env.get(name)
        return float(raw) if raw else default

    home = Path(env.get("BERTQ_HOME") or DEFAULT_HOME).expanduser().resolve()
    database_url = env.get("BERTQ_DATABASE_URL") or f"sqlite:///{home / 'bertq.db'}"
    configured = env.get("BERTQ_ARTIFACTS") or ""
    store = configured.rstrip("/") if re.match(r"^[a-z][a-z0-9+.-]*://", configured, re.IGNORECASE) else None
    artifacts = Path((None if store else configured) or home / "artifacts").expanduser().resolve()
    return Settings(
        home=home,
        database_url=database_url,
        broker_url=env.get("BERTQ_BROKER_URL") or None,
        artifacts=artifacts,
        lease_seconds=number("BERTQ_LEASE_SECONDS", DEFAULT_LEASE_SECONDS),
        heartbeat_seconds=number("BERTQ_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_SECONDS),
        max_attempts=int(number("BERTQ_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)),
        visibility_timeout=number("BERTQ_VISIBILITY_TIMEOUT", DEFAULT_VISIBILITY_TIMEOUT),
        allowed_roots=tuple(Path(p).expanduser().resolve() for p in roots.split(os.pathsep) if p)
        if (roots := env.get("BERTQ_ALLOWED_ROOTS"))
        else default_allowed_roots(),
        retry_delay_seconds=number("BERTQ_RETRY_DELAY_SECONDS", DEFAULT_RETRY_DELAY_SECONDS),
        db_busy_seconds=number("BERTQ_DB_BUSY_SECONDS", DEFAULT_DB_BUSY_SECONDS),
        artifact_store=store,
    )
