"""Counts kept by SQL triggers (migration 0007): totals, /stats and /metrics read them.

Every insert, update and delete of jobs, runs and notification deliveries appends its change
to ``counter_deltas`` in its own transaction, whatever code path makes it; ``counters`` holds
the sums as of the last fold. A count is one statement over both (one snapshot), so it costs
the changes since the last fold, not the rows counted, and it is exact after a restart. The
reconciler's leader folds the deltas at each tick (:func:`fold_deltas`).
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import delete, func, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Counter, CounterDelta
from workflows.models import JobStatus


async def read_counters(session: AsyncSession) -> dict[str, int]:
    parts = union_all(
        select(Counter.name.label("name"), Counter.value.label("value")),
        select(CounterDelta.name.label("name"), CounterDelta.delta.label("value")),
    ).subquery()
    rows = await session.execute(
        select(parts.c.name, func.sum(parts.c.value)).group_by(parts.c.name)
    )
    return {name: int(value) for name, value in rows.all()}


async def fold_deltas(session: AsyncSession) -> int:
    """Add the deltas to ``counters`` and remove them, atomically (commits); how many.

    Safe to run from several processes: a delta is deleted, and so added, by one of them
    (on PostgreSQL a second DELETE waits for the first and then skips its rows).
    """
    removed = await session.execute(
        delete(CounterDelta).returning(CounterDelta.name, CounterDelta.delta)
    )
    sums: dict[str, int] = defaultdict(int)
    count = 0
    for name, delta in removed.all():
        sums[name] += int(delta)
        count += 1
    for name in sorted(sums):
        folded = await session.execute(
            update(Counter)
            .where(Counter.name == name)
            .values(value=Counter.value + sums[name])
            .execution_options(synchronize_session=False)
        )
        if not folded.rowcount:  # type: ignore[attr-defined]
            # A counter the migration did not seed (a status added later): it starts here.
            session.add(Counter(name=name, value=sums[name]))
    await session.commit()
    return count


def by_status(counters: dict[str, int], table: str) -> dict[JobStatus, int]:
    """``jobs`` or ``runs`` per status."""
    return {status: counters.get(f"{table}:{status.value}", 0) for status in JobStatus}
