"""A schedule's pause/resume history, its SQL mirror, and the backfills asked for."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Backfill, Job, ScheduleEvent, utcnow

RECENT_EVENTS = 100
# A schedule firing that did not run because another run held the job.
SKIPPED = "skipped"


def add_pause_event(
    session: AsyncSession, job_id: str, paused: bool, note: str | None, actor: str
) -> None:
    """Stage a pause (or resume) event; the caller commits with its own change."""
    session.add(
        ScheduleEvent(
            job_id=job_id,
            event="paused" if paused else "resumed",
            note=note,
            actor=actor,
            at=utcnow(),
        )
    )


async def recent_events(session: AsyncSession, job_id: str) -> Sequence[ScheduleEvent]:
    rows = await session.scalars(
        select(ScheduleEvent)
        .where(ScheduleEvent.job_id == job_id)
        .order_by(ScheduleEvent.at.desc(), ScheduleEvent.id.desc())
        .limit(RECENT_EVENTS)
    )
    return rows.all()


async def mirror_state(
    session: AsyncSession,
    job_id: str,
    paused: bool,
    note: str | None,
    upcoming: datetime | None,
    *,
    actor: str,
) -> bool:
    """Store a schedule's state (commits); a change of ``paused`` is recorded as an event.

    Returns whether anything changed.
    """
    job = await session.get(Job, job_id)
    if job is None or (job.paused == paused and job.next_run_at == upcoming):
        return False
    if job.paused != paused:
        add_pause_event(session, job_id, paused, note, actor)
    job.paused = paused
    job.next_run_at = None if paused else upcoming
    await session.commit()
    return True


async def record_backfill(
    session: AsyncSession, job_id: str, start: datetime, end: datetime
) -> None:
    """Remember a backfill's range (commits), so its runs are recorded as ``backfill``."""
    session.add(Backfill(job_id=job_id, start_at=start, end_at=end, created_at=utcnow()))
    await session.commit()


async def record_skipped_firing(session: AsyncSession, job_id: str, reason: str) -> None:
    """Count a firing that did not run, with its reason (commits); no run row is made."""
    event = ScheduleEvent(job_id=job_id, event=SKIPPED, note=reason, actor="schedule", at=utcnow())
    session.add(event)
    await session.commit()


async def count_skipped_firings(session: AsyncSession, job_id: str) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(ScheduleEvent)
        .where(ScheduleEvent.job_id == job_id, ScheduleEvent.event == SKIPPED)
    )
    return int(count or 0)
