"""run claims: a job's one active run, claimed with a conditional UPDATE

Revision ID: 0005
Revises: 0007
Create Date: 2026-11-30 13:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Both nullable: every existing job starts unclaimed. Runs in flight from before the
    # upgrade still count as active through their status (store/claims.py).
    op.add_column("jobs", sa.Column("active_run_id", sa.String(length=255), nullable=True))
    op.add_column("jobs", sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_claimed_at", "jobs", ["claimed_at"], unique=False)


def downgrade() -> None:
    # Not a batch (which rebuilds the table on SQLite): dropping and renaming ``jobs`` would
    # cascade to every row that references it. SQLite 3.35+ drops a column in place.
    op.drop_index("ix_jobs_claimed_at", table_name="jobs")
    op.drop_column("jobs", "claimed_at")
    op.drop_column("jobs", "active_run_id")
