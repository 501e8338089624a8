"""who changed what: actors on jobs, runs, backfills and schedule events; the audit trail;
idempotency keys

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 09:30:12.118204
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# An API key's name may have 64 characters; 0001 sized schedule_events.actor for "api".
_ACTOR = sa.String(length=64)


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pending_actor", _ACTOR, nullable=True))
        batch_op.add_column(sa.Column("created_by", _ACTOR, nullable=True))
        batch_op.add_column(sa.Column("updated_by", _ACTOR, nullable=True))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("triggered_by", _ACTOR, nullable=True))
        batch_op.add_column(sa.Column("cancelled_by", _ACTOR, nullable=True))
    with op.batch_alter_table("backfills", schema=None) as batch_op:
        batch_op.add_column(sa.Column("actor", _ACTOR, nullable=True))
    with op.batch_alter_table("schedule_events", schema=None) as batch_op:
        batch_op.alter_column(
            "actor", existing_type=sa.String(length=16), type_=_ACTOR, existing_nullable=False
        )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", _ACTOR, nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_events_job_id_at", ["job_id", "at"], unique=False)
    op.create_table(
        "idempotency_keys",
        sa.Column("actor", _ACTOR, nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("actor", "key"),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index("ix_idempotency_keys_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_idempotency_keys_created_at")
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_job_id_at")
    op.drop_table("audit_events")
    # Names longer than 0001's 16 characters are cut to fit.
    events = sa.table("schedule_events", sa.column("actor", _ACTOR))
    op.execute(events.update().values(actor=sa.func.substr(events.c.actor, 1, 16)))
    with op.batch_alter_table("schedule_events", schema=None) as batch_op:
        batch_op.alter_column(
            "actor", existing_type=_ACTOR, type_=sa.String(length=16), existing_nullable=False
        )
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch copy of `jobs` would drop the
    # table, and SQLite's cascade would take every run and checkpoint with it.
    for table, column in [
        ("backfills", "actor"),
        ("runs", "cancelled_by"),
        ("runs", "triggered_by"),
        ("jobs", "updated_by"),
        ("jobs", "created_by"),
        ("jobs", "pending_actor"),
    ]:
        op.drop_column(table, column)
