"""Migrations: the models and the Alembic history agree, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from alembic.script import ScriptDirectory

from bertq.db.engine import SCHEMA_HEAD, alembic_config, current_revision, engine_for


def test_schema_head_constant_matches_the_migrations():
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_current_head() == SCHEMA_HEAD


def test_first_use_migrates_and_alembic_check_is_clean(bertq_any_db):
    settings = bertq_any_db.settings()
    result = bertq_any_db.run("db", "upgrade", check=True)
    assert SCHEMA_HEAD in result.stdout
    assert current_revision(engine_for(settings.database_url)) == SCHEMA_HEAD
    command.check(alembic_config(settings.database_url))  # raises if models and migrations differ
