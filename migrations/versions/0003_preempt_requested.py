"""preempt requested

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 04:53:42.309687
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (with a default) works in place on SQLite and PostgreSQL alike.
    op.add_column("jobs", sa.Column("preempt_requested", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("preempt_requested")
