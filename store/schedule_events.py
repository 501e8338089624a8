"""A schedule's pause/resume history, its SQL mirror, and the backfills asked for."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from store.models import Backfill, Job, ScheduleEvent, utcnow

RECENT_EVENTS = 100
# A schedule firing that did not run because another run held the job.
SKIPPED = "skipped"
# Job ids per `IN (...)` read of the mirror (well under SQLite's bound on parameters).
IDS_PER_READ = 1000


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


async def mirrored_states(session: AsyncSession) -> dict[str, tuple[bool, datetime | None]]:
    """Every job's mirrored ``(paused, next_run_at)``, in one query."""
    rows = await session.execute(select(Job.job_id, Job.paused, Job.next_run_at))
    return {job_id: (paused, upcoming) for job_id, paused, upcoming in rows.all()}


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
    # A paused job mirrors no next firing (Temporal still computes one).
    if job is None or (job.paused == paused and job.next_run_at == (None if paused else upcoming)):
        return False
    if job.paused != paused:
        add_pause_event(session, job_id, paused, note, actor)
    job.paused = paused
    job.next_run_at = None if paused else upcoming
    try:
        await session.commit()
    except StaleDataError:
        # The job was deleted since it was read (a DELETE racing this read): nothing to mirror.
        await session.rollback()
        return False
    return True


async def mirror_candidates(
    session: AsyncSession, now: datetime, limit: int
) -> tuple[list[str], list[str]]:
    """What the mirror must ask Temporal about, besides the paused listing.

    Returns the ids of the jobs mirrored as paused, and up to ``limit`` ids of unpaused jobs
    with a cron whose ``next_run_at`` has passed (the schedule fired, or is about to) or is
    not known yet (a job just created or resumed), the oldest first.
    """
    paused = await session.scalars(select(Job.job_id).where(Job.paused.is_(True)))
    stale = await session.scalars(
        select(Job.job_id)
        .where(
            Job.paused.is_(False),
            Job.schedule.is_not(None),
            Job.schedule != "",
            or_(Job.next_run_at.is_(None), Job.next_run_at <= now),
        )
        .order_by(Job.next_run_at.is_not(None), Job.next_run_at)
        .limit(limit)
    )
    return list(paused.all()), list(stale.all())


ScheduleState = tuple[bool, str | None, datetime | None]


async def mirror_states(
    session: AsyncSession, states: dict[str, ScheduleState], *, actor: str
) -> int:
    """Store many schedules' states at once (commits): a read per 1,000, one bulk write.

    ``states`` maps job ids to ``(paused, note, next firing)``. Only rows whose ``paused``
    or ``next_run_at`` differ are written (a paused job's ``next_run_at`` is None); a
    change of ``paused`` is recorded as an event. Returns how many rows changed.
    """
    if not states:
        return 0
    ids = list(states)
    found: list[tuple[str, bool, datetime | None]] = []
    for start in range(0, len(ids), IDS_PER_READ):  # only the rows listed: no full scan
        rows = await session.execute(
            select(Job.job_id, Job.paused, Job.next_run_at).where(
                Job.job_id.in_(ids[start : start + IDS_PER_READ])
            )
        )
        found.extend((job_id, bool(paused), upcoming) for job_id, paused, upcoming in rows.all())
    changes: list[dict[str, object]] = []
    for job_id, paused_now, next_now in found:
        state = states.get(job_id)
        if state is None:
            continue
        paused, note, upcoming = state
        target = None if paused else upcoming
        if bool(paused_now) == paused and next_now == target:
            continue
        if bool(paused_now) != paused:
            add_pause_event(session, job_id, paused, note, actor)
        changes.append({"b_job_id": job_id, "b_paused": paused, "b_next_run_at": target})
    if changes:
        jobs = Job.__table__
        assert isinstance(jobs, Table)
        await session.execute(
            update(jobs)  # Core executemany: one statement, every changed row
            .where(jobs.c.job_id == bindparam("b_job_id"))
            .values(paused=bindparam("b_paused"), next_run_at=bindparam("b_next_run_at")),
            changes,
        )
    await session.commit()
    return len(changes)


async def record_backfill(
    session: AsyncSession, job_id: str, start: datetime, end: datetime, actor: str | None = None
) -> None:
    """Remember a backfill's range (commits), so its runs are recorded as ``backfill``."""
    session.add(
        Backfill(job_id=job_id, start_at=start, end_at=end, created_at=utcnow(), actor=actor)
    )
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
