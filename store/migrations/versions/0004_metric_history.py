"""metric history: the points of every PROGRESS report's metrics, per run

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10 09:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # New tables only: runs and jobs are left as they were, and deleting a run or a job
    # takes its history with it (ON DELETE CASCADE).
    op.create_table(
        "metric_histories",
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("series", sa.JSON(), nullable=False),
        sa.Column("ignored_values", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )
    with op.batch_alter_table("metric_histories", schema=None) as batch_op:
        batch_op.create_index("ix_metric_histories_job_id", ["job_id"], unique=False)
    op.create_table(
        "metric_points",
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "name", "step"),
    )


def downgrade() -> None:
    op.drop_table("metric_points")
    with op.batch_alter_table("metric_histories", schema=None) as batch_op:
        batch_op.drop_index("ix_metric_histories_job_id")
    op.drop_table("metric_histories")
