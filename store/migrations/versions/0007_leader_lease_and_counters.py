"""leader lease, counters kept by triggers, and the indexes keyset paging needs

Revision ID: 0007
Revises: 0008
Create Date: 2026-11-30 13:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of JobStatus's values: a migration never follows later code.
STATUSES = ("pending", "queued", "running", "retrying", "completed", "failed", "cancelled")
COUNTERS = (
    *(f"jobs:{status}" for status in STATUSES),
    "jobs:paused",
    "jobs:scheduled",
    *(f"runs:{status}" for status in STATUSES),
    "runs:retries",
    "deliveries:failed",
)

# What a row adds to the counters, as SQL over NEW or OLD (`R`).
_JOB_PAUSED = "(CASE WHEN R.paused THEN 1 ELSE 0 END)"
_JOB_SCHEDULED = "(CASE WHEN R.schedule IS NOT NULL AND NOT R.paused THEN 1 ELSE 0 END)"
_DELIVERY_FAILED = "(CASE WHEN R.status = 'failed' THEN 1 ELSE 0 END)"


def _sqlite_effects(table: str, row: str, sign: str) -> list[str]:
    """Statements appending one row's share (sign '+') or its removal ('-') as deltas."""

    def bump(name: str, amount: str) -> str:
        return (
            f"INSERT INTO counter_deltas (name, delta) SELECT {name}, {sign}({amount}) "
            f"WHERE ({amount}) <> 0;"
        )

    if table == "jobs":
        return [
            bump(f"'jobs:' || {row}.status", "1"),
            bump("'jobs:paused'", _JOB_PAUSED.replace("R.", f"{row}.")),
            bump("'jobs:scheduled'", _JOB_SCHEDULED.replace("R.", f"{row}.")),
        ]
    if table == "runs":
        return [
            bump(f"'runs:' || {row}.status", "1"),
            bump("'runs:retries'", f"{row}.retry_count"),
        ]
    return [bump("'deliveries:failed'", _DELIVERY_FAILED.replace("R.", f"{row}."))]


_WATCHED = {
    "jobs": ("status", "paused", "schedule"),
    "runs": ("status", "retry_count"),
    "notification_deliveries": ("status",),
}


def _sqlite_upgrade() -> None:
    for table, columns in _WATCHED.items():
        added = "\n".join(_sqlite_effects(table, "NEW", "+"))
        removed = "\n".join(_sqlite_effects(table, "OLD", "-"))
        changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in columns)
        op.execute(
            f"CREATE TRIGGER count_{table}_insert AFTER INSERT ON {table} BEGIN\n{added}\nEND"
        )
        op.execute(
            f"CREATE TRIGGER count_{table}_delete AFTER DELETE ON {table} BEGIN\n{removed}\nEND"
        )
        op.execute(
            f"CREATE TRIGGER count_{table}_update AFTER UPDATE OF {', '.join(columns)} "
            f"ON {table} WHEN {changed} BEGIN\n{removed}\n{added}\nEND"
        )


def _pg_shares(table: str, row: str, sign: str) -> str:
    """One row's counter shares as a SQL array of (name, amount) pairs, for PostgreSQL."""
    if table == "jobs":
        pairs = [
            (f"'jobs:' || {row}.status", "1"),
            ("'jobs:paused'", _JOB_PAUSED.replace("R.", f"{row}.")),
            ("'jobs:scheduled'", _JOB_SCHEDULED.replace("R.", f"{row}.")),
        ]
    elif table == "runs":
        pairs = [(f"'runs:' || {row}.status", "1"), ("'runs:retries'", f"{row}.retry_count")]
    else:
        pairs = [("'deliveries:failed'", _DELIVERY_FAILED.replace("R.", f"{row}."))]
    names = ", ".join(name for name, _ in pairs)
    amounts = ", ".join(f"{sign}({amount})::bigint" for _, amount in pairs)
    return f"names := names || ARRAY[{names}]; amounts := amounts || ARRAY[{amounts}];"


def _pg_upgrade() -> None:
    for table in _WATCHED:
        op.execute(
            f"""
CREATE OR REPLACE FUNCTION count_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    names text[] := '{{}}';
    amounts bigint[] := '{{}}';
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        {_pg_shares(table, "OLD", "-")}
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        {_pg_shares(table, "NEW", "+")}
    END IF;
    -- Appended, never updated in place: concurrent writers share no row, hence no lock.
    INSERT INTO counter_deltas (name, delta)
        SELECT t.name, sum(t.amount) FROM unnest(names, amounts) AS t(name, amount)
        GROUP BY t.name HAVING sum(t.amount) <> 0;
    RETURN NULL;
END $$
"""
        )
        op.execute(
            f"CREATE TRIGGER count_{table} AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION count_{table}()"
        )


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "counter_deltas",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_created_at_job_id", ["created_at", "job_id"])
        batch_op.create_index(
            "ix_jobs_status_created_at_job_id", ["status", "created_at", "job_id"]
        )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_status", ["status"])
        batch_op.create_index(
            "ix_runs_job_id_status_started_at", ["job_id", "status", "started_at"]
        )
    if op.get_context().dialect.name == "postgresql":
        _pg_upgrade()
    else:
        _sqlite_upgrade()
    # Start from what the tables hold now; from here on the triggers keep the counters.
    counters = sa.table("counters", sa.column("name"), sa.column("value"))
    op.bulk_insert(counters, [{"name": name, "value": 0} for name in COUNTERS])
    op.execute(
        "UPDATE counters SET value = (SELECT count(*) FROM jobs WHERE 'jobs:' || jobs.status "
        "= counters.name) WHERE name LIKE 'jobs:%' AND name NOT IN ('jobs:paused', "
        "'jobs:scheduled')"
    )
    op.execute(
        "UPDATE counters SET value = (SELECT count(*) FROM runs WHERE 'runs:' || runs.status "
        "= counters.name) WHERE name LIKE 'runs:%' AND name <> 'runs:retries'"
    )
    op.execute(
        f"UPDATE counters SET value = (SELECT coalesce(sum({_JOB_PAUSED.replace('R.', '')}), 0) "
        "FROM jobs) WHERE name = 'jobs:paused'"
    )
    op.execute(
        "UPDATE counters SET value = (SELECT coalesce(sum("
        f"{_JOB_SCHEDULED.replace('R.', '')}), 0) FROM jobs) WHERE name = 'jobs:scheduled'"
    )
    op.execute(
        "UPDATE counters SET value = (SELECT coalesce(sum(retry_count), 0) FROM runs) "
        "WHERE name = 'runs:retries'"
    )
    op.execute(
        "UPDATE counters SET value = (SELECT count(*) FROM notification_deliveries "
        "WHERE status = 'failed') WHERE name = 'deliveries:failed'"
    )


def downgrade() -> None:
    for table in _WATCHED:
        if op.get_context().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER count_{table} ON {table}")
            op.execute(f"DROP FUNCTION count_{table}()")
        else:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER count_{table}_{event}")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_job_id_status_started_at")
        batch_op.drop_index("ix_runs_status")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_created_at_job_id")
        batch_op.drop_index("ix_jobs_created_at_job_id")
    op.drop_table("counter_deltas")
    op.drop_table("counters")
    op.drop_table("leases")
