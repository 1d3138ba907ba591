"""Engines and sessions, and bringing the schema up to date on first use.

Callers own the session's lifecycle (`with sessions() as s, s.begin(): ...`); the query functions
in `bertq.db.jobs` take the session as a keyword argument.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from bertq.config import DEFAULT_DB_BUSY_SECONDS, Settings, load_settings

SCHEMA_HEAD = "0004"
"""The newest Alembic revision; a test checks it matches migrations/versions."""

_engines: dict[str, Engine] = {}
_ready: set[str] = set()


def engine_for(url: str, *, busy_seconds: float = DEFAULT_DB_BUSY_SECONDS) -> Engine:
    if url not in _engines:
        if url.startswith("sqlite"):
            database = url.split("///", 1)[-1]
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": busy_seconds})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        _engines[url] = engine
    return _engines[url]


def _sqlite_pragmas(connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (the CLI) never block the writing worker
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def sessions(settings: Settings | None = None) -> sessionmaker[Session]:
    """A session factory for the configured database, its schema migrated to the newest revision."""
    settings = settings or load_settings()
    engine = engine_for(settings.database_url, busy_seconds=settings.db_busy_seconds)
    if settings.database_url not in _ready:
        if current_revision(engine) != SCHEMA_HEAD:
            upgrade(settings)
        _ready.add(settings.database_url)
    return sessionmaker(engine, expire_on_commit=False)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(settings: Settings | None = None, revision: str = "head") -> None:
    """`alembic upgrade head`, safe when several processes start at once."""
    from alembic import command  # imported here: only needed when the schema is behind

    settings = settings or load_settings()
    engine = engine_for(settings.database_url)
    config = alembic_config(settings.database_url)
    settings.home.mkdir(parents=True, exist_ok=True)
    with open(settings.home / "migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process on this machine migrates at a time
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                # SQLite alters a table by copying it; foreign keys must be off while it does
                # (the pragma only takes effect outside a transaction).
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                connection.commit()
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    # Across machines: PostgreSQL serialises concurrent migrations.
                    connection.execute(text("SELECT pg_advisory_xact_lock(7263550)"))
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
            if connection.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    import bertq.migrations

    config = Config()
    config.set_main_option("script_location", str(Path(bertq.migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config
