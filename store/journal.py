"""The schedule-sync journal: a dual write between SQL and Temporal made safe.

An entry is written and committed before the API touches a job's Temporal Schedule and
removed once both agree; the reconciler replays entries a crash left behind.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import ScheduleSync, utcnow


async def journal_schedule_change(session: AsyncSession, job_id: str) -> None:
    """Record (and commit) that this job's schedule is about to change."""
    await session.merge(ScheduleSync(job_id=job_id, requested_at=utcnow()))
    await session.commit()


def stage_schedule_change(session: AsyncSession, job_id: str) -> None:
    """Add the entry of a job that is being created to the transaction that adds its row."""
    session.add(ScheduleSync(job_id=job_id, requested_at=utcnow()))


async def clear_schedule_change(session: AsyncSession, job_id: str) -> None:
    await session.execute(delete(ScheduleSync).where(ScheduleSync.job_id == job_id))
    await session.commit()


async def pending_schedule_changes(session: AsyncSession, older_than: timedelta) -> list[str]:
    cutoff = utcnow() - older_than
    rows = await session.scalars(
        select(ScheduleSync.job_id).where(ScheduleSync.requested_at <= cutoff)
    )
    return list(rows.all())
