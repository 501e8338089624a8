"""Counts read from the ``counters`` table, which SQL triggers keep exact (migration 0007).

Every insert, update and delete of jobs, runs and notification deliveries changes the
counters in its own transaction, whatever code path makes it, so a read costs one small
query however many rows there are, and the figures survive a restart.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Counter
from workflows.models import JobStatus


async def read_counters(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Counter.name, Counter.value))
    return {name: int(value) for name, value in rows.all()}


def by_status(counters: dict[str, int], table: str) -> dict[JobStatus, int]:
    """``jobs`` or ``runs`` per status."""
    return {status: counters.get(f"{table}:{status.value}", 0) for status in JobStatus}
