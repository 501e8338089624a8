"""Checkpoint records in SQL: each recorded once; latest = highest step, then newest.

The records double as the fingerprint cache: a file at a recorded path whose size and
modification time are those of a record has that record's sha256, without being read again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Checkpoint


async def record_checkpoint(
    session: AsyncSession,
    *,
    job_id: str,
    run_id: str,
    attempt: int,
    path: str,
    step: int | None,
    size_bytes: int,
    sha256: str,
    at: datetime,
    mtime_ns: int | None = None,
) -> bool:
    """Record a checkpoint once (by job, path and content); True if it is new.

    ``mtime_ns`` is the modification time the content was hashed at (None: not cacheable,
    e.g. it changed while being read). The same content seen again at another time (the
    file touched, or rewritten with the same bytes) moves the record to that time, so the
    file is not hashed again while it stays so.
    """
    existing = await session.scalar(
        select(Checkpoint).where(
            Checkpoint.job_id == job_id, Checkpoint.path == path, Checkpoint.sha256 == sha256
        )
    )
    if existing is not None:
        if mtime_ns is not None and existing.mtime_ns != mtime_ns:
            existing.mtime_ns = mtime_ns
            await session.commit()
        return False
    session.add(
        Checkpoint(
            job_id=job_id,
            run_id=run_id,
            attempt=attempt,
            path=path,
            step=step,
            size_bytes=size_bytes,
            sha256=sha256,
            mtime_ns=mtime_ns,
            created_at=at,
        )
    )
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return False
    return True


async def known_sha256(
    session: AsyncSession, *, job_id: str, path: str, size_bytes: int, mtime_ns: int
) -> str | None:
    """The sha256 recorded for ``path`` at this size and modification time, if any."""
    query = select(Checkpoint.sha256).where(
        Checkpoint.job_id == job_id,
        Checkpoint.path == path,
        Checkpoint.size_bytes == size_bytes,
        Checkpoint.mtime_ns == mtime_ns,
    )
    return await session.scalar(query.order_by(Checkpoint.id.desc()).limit(1))


def _latest_first(query: Select[Checkpoint]) -> Select[Checkpoint]:
    return query.order_by(
        Checkpoint.step.is_(None), Checkpoint.step.desc(), Checkpoint.created_at.desc()
    )


async def latest_of_runs(session: AsyncSession, run_ids: Sequence[str]) -> dict[str, Checkpoint]:
    """Each run's latest checkpoint, for runs that recorded any (one query)."""
    latest: dict[str, Checkpoint] = {}
    if run_ids:
        rows = await session.scalars(
            _latest_first(select(Checkpoint).where(Checkpoint.run_id.in_(run_ids)))
        )
        for checkpoint in rows:
            latest.setdefault(checkpoint.run_id, checkpoint)
    return latest


async def latest_checkpoint(
    session: AsyncSession, job_id: str, run_id: str | None = None
) -> Checkpoint | None:
    """The job's (or one run's) latest checkpoint: highest step, then newest."""
    query = select(Checkpoint).where(Checkpoint.job_id == job_id)
    if run_id is not None:
        query = query.where(Checkpoint.run_id == run_id)
    return await session.scalar(_latest_first(query).limit(1))


async def list_checkpoints(session: AsyncSession, job_id: str) -> Sequence[Checkpoint]:
    query = select(Checkpoint).where(Checkpoint.job_id == job_id)
    rows = await session.scalars(query.order_by(Checkpoint.created_at.desc(), Checkpoint.id.desc()))
    return rows.all()
