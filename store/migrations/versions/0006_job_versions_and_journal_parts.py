"""job versions (optimistic concurrency) and what each journal entry was about

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-30 13:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE, no batch copy: on SQLite a batch would drop and recreate the jobs
    # table, and dropping it cascades to the rows that reference it. Existing jobs start at
    # version 1, as new ones do.
    op.add_column("jobs", sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    # Entries left by the previous release have no token and parts 0: a replay applies
    # spec, action and policy from SQL to them and leaves the pause state alone.
    op.add_column("schedule_syncs", sa.Column("token", sa.String(length=32), nullable=True))
    op.add_column(
        "schedule_syncs", sa.Column("parts", sa.Integer(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN: SQLite has it since 3.35.
    op.drop_column("schedule_syncs", "parts")
    op.drop_column("schedule_syncs", "token")
    op.drop_column("jobs", "version")
