"""Checkpoint records in SQL: each recorded once; latest = highest step, then newest."""

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
) -> bool:
    """Record a checkpoint once (by job, path and content); True if it is new."""
    existing = await session.scalar(
        select(Checkpoint.id).where(
            Checkpoint.job_id == job_id, Checkpoint.path == path, Checkpoint.sha256 == sha256
        )
    )
    if existing is not None:
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
            created_at=at,
        )
    )
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return False
    return True


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
