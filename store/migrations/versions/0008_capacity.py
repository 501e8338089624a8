"""capacity: workers and their inventory, GPU leases, the capacity queue, job priority

Revision ID: 0008
Revises: 0009
Create Date: 2026-11-30 13:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("host", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("gpus", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("queue_reason", sa.Text(), nullable=True))
    op.create_table(
        "workers",
        sa.Column("task_queue", sa.String(length=512), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("pool", sa.String(length=255), nullable=False),
        sa.Column("gpus", sa.JSON(), nullable=False),
        sa.Column("cpus", sa.Float(), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("task_queue"),
    )
    op.create_table(
        "run_leases",
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("gpus", sa.JSON(), nullable=False),
        sa.Column("cpus", sa.Float(), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("leased_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index("ix_run_leases_host", "run_leases", ["host"], unique=False)
    op.create_table(
        "gpu_leases",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("gpu", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("leased_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run_leases.run_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("host", "gpu"),
    )
    op.create_index("ix_gpu_leases_run_id", "gpu_leases", ["run_id"], unique=False)
    op.create_table(
        "capacity_queue",
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("pool", sa.String(length=255), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("cpus", sa.Float(), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index(
        "ix_capacity_queue_order",
        "capacity_queue",
        ["pool", "priority", "submitted_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_capacity_queue_order", table_name="capacity_queue")
    op.drop_table("capacity_queue")
    op.drop_index("ix_gpu_leases_run_id", table_name="gpu_leases")
    op.drop_table("gpu_leases")
    op.drop_index("ix_run_leases_host", table_name="run_leases")
    op.drop_table("run_leases")
    op.drop_table("workers")
    # SQLite 3.35+ drops columns in place (no table copy, so no cascade).
    op.drop_column("runs", "queue_reason")
    op.drop_column("runs", "gpus")
    op.drop_column("runs", "host")
    op.drop_column("jobs", "priority")
