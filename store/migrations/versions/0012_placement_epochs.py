"""placement epochs: each placement of a run gets the next epoch, which fences stale copies

Revision ID: 0012
Revises: 0005
Create Date: 2026-11-30 14:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Not batches: on SQLite a batch rebuilds ``runs`` (copy, drop, rename), which cascades deletes
# to the rows that reference it and loses the counters' triggers on it (0007).
def upgrade() -> None:
    op.add_column(
        "runs", sa.Column("placement_epoch", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    op.drop_column("runs", "placement_epoch")
