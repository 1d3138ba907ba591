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


def test_a_populated_database_migrates_from_the_first_revision(bertq_any_db):
    """Later revisions alter `jobs`, which other tables reference: the upgrade must keep every row."""
    from sqlalchemy import text

    from bertq.db.engine import upgrade

    settings = bertq_any_db.settings()
    upgrade(settings, "0001")
    engine = engine_for(settings.database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO jobs (id, kind, spec, status, queue, priority, attempts, max_attempts, cancel_requested, "
                "progress, progress_detail, result, created_at) VALUES (1, 'finetune', '{}', 'SUCCEEDED', 'cpu', 5, 1, 3, "
                "false, 1.0, '{}', '{}', '2026-01-01 00:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO metrics (job_id, attempt, name, value, created_at) "
                "VALUES (1, 1, 'eval_accuracy', 0.9, '2026-01-01 00:00:00')"
            )
        )
    upgrade(settings)
    assert current_revision(engine) == SCHEMA_HEAD
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM jobs")).scalar() == 1
        assert connection.execute(text("SELECT value FROM metrics")).scalar() == 0.9
        assert connection.execute(text("SELECT preempt_requested FROM jobs")).scalar() in (False, 0)
