"""checkpoint sizes in 64 bits; modification times for the fingerprint cache

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 10:12:41.503317
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INT32_MAX = 2**31 - 1


def upgrade() -> None:
    # A 32-bit size overflows at 2 GiB on PostgreSQL; SQLite's INTEGER was always 64-bit.
    # mtime_ns: with size_bytes, the state of the file when sha256 was computed, so an
    # unchanged file is not read again (NULL on older rows: hashed once more).
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.alter_column(
            "size_bytes",
            existing_type=sa.Integer(),
            type_=sa.BigInteger(),
            existing_nullable=False,
        )
        batch_op.add_column(sa.Column("mtime_ns", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # 32 bits cannot hold a size of 2 GiB or more: such sizes are capped (the size is only
    # shown, never compared, by the code of 0001), rather than the checkpoints dropped.
    checkpoints = sa.table("checkpoints", sa.column("size_bytes", sa.BigInteger()))
    op.execute(
        checkpoints.update()
        .where(checkpoints.c.size_bytes > _INT32_MAX)
        .values(size_bytes=_INT32_MAX)
    )
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.drop_column("mtime_ns")
        batch_op.alter_column(
            "size_bytes",
            existing_type=sa.BigInteger(),
            type_=sa.Integer(),
            existing_nullable=False,
        )
