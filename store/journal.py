"""The schedule-sync journal: a dual write between SQL and Temporal made safe.

An entry is written and committed before the API touches a job's Temporal Schedule and
removed once both agree; the reconciler replays entries a crash left behind.

One entry per job, shared by every request that changes it: each request that journals the
job refreshes ``requested_at``, takes the entry over with its own ``token`` and adds what its
change is about to ``parts``. A request clears the entry only while the token is still its
own, so a request that finishes early never clears the entry of one still in flight, and the
parts of a request that failed half-way stay until a later writer or the replay repairs them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import ScheduleSync, utcnow


@dataclass(frozen=True)
class JournalEntry:
    """A journal entry as one request wrote it, or as the replay read it."""

    job_id: str
    token: str | None
    # Every part journalled since the entry was last cleared, this request's included.
    parts: int


async def journal_schedule_change(
    session: AsyncSession, job_id: str, parts: int = 0
) -> JournalEntry:
    """Record (and commit) that this job's schedule is about to change, and in what.

    Returns:
        The entry as it now stands: this request's token, and the parts of every change
        journalled since the entry was last cleared (a writer that failed half-way included).
    """
    token = secrets.token_hex(16)
    for _ in range(2):
        changed = await session.execute(
            update(ScheduleSync)
            .where(ScheduleSync.job_id == job_id)
            .values(
                requested_at=utcnow(),
                token=token,
                parts=ScheduleSync.parts.op("|")(parts),
            )
        )
        if changed.rowcount == 0:  # type: ignore[attr-defined]
            session.add(
                ScheduleSync(job_id=job_id, requested_at=utcnow(), token=token, parts=parts)
            )
        try:
            await session.flush()
        except IntegrityError:
            # Another request inserted the entry between our update and insert: update it.
            await session.rollback()
            continue
        union = await session.scalar(
            select(ScheduleSync.parts).where(ScheduleSync.job_id == job_id)
        )
        await session.commit()
        return JournalEntry(job_id, token, int(union or 0))
    raise RuntimeError(f"could not journal the schedule change of {job_id}")


def stage_schedule_change(session: AsyncSession, job_id: str) -> None:
    """Add the entry of a job that is being created to the transaction that adds its row."""
    session.add(ScheduleSync(job_id=job_id, requested_at=utcnow(), parts=0))


async def clear_schedule_change(
    session: AsyncSession, job_id: str, token: str | None = None
) -> bool:
    """Remove the job's entry (commits); with ``token``, only while it is still that one's.

    Returns:
        Whether an entry was removed.
    """
    query = delete(ScheduleSync).where(ScheduleSync.job_id == job_id)
    if token is not None:
        query = query.where(ScheduleSync.token == token)
    removed = await session.execute(query)
    await session.commit()
    return bool(removed.rowcount)  # type: ignore[attr-defined]


async def clear_entry(session: AsyncSession, entry: JournalEntry) -> bool:
    """Remove the entry (commits) unless a request journalled the job again since it was read."""
    query = delete(ScheduleSync).where(ScheduleSync.job_id == entry.job_id)
    if entry.token is None:  # written by a release that had no tokens
        query = query.where(ScheduleSync.token.is_(None))
    else:
        query = query.where(ScheduleSync.token == entry.token)
    removed = await session.execute(query)
    await session.commit()
    return bool(removed.rowcount)  # type: ignore[attr-defined]


async def pending_schedule_changes(session: AsyncSession, older_than: timedelta) -> list[str]:
    return [entry.job_id for entry in await pending_entries(session, older_than)]


async def pending_entries(session: AsyncSession, older_than: timedelta) -> list[JournalEntry]:
    """Entries not refreshed for ``older_than``: no request that wrote them is in flight."""
    cutoff = utcnow() - older_than
    rows = await session.execute(
        select(ScheduleSync.job_id, ScheduleSync.token, ScheduleSync.parts).where(
            ScheduleSync.requested_at <= cutoff
        )
    )
    return [JournalEntry(job_id, token, int(parts)) for job_id, token, parts in rows.all()]
