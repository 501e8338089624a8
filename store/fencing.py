"""Placement epochs: what a stale copy of a run may no longer do.

A run placed again (its host was taken for lost) gets the next epoch (``store/capacity.py``).
A copy still running under an older epoch on the lost host (frozen, then back) is stale: its
checkpoints and progress are not recorded, so the current copy never resumes from what it
wrote after the fence, and its worker stops it. The check is an UPDATE of the run's row that
matches only the current epoch: it takes the row's lock (PostgreSQL) or the one writer's lock
(SQLite), so a new placement, which writes the same row, cannot slip in between the check and
the write that follows it in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Run, RunLease, WorkerHost
from workflows.models import JobStatus

_FINAL = [status.value for status in JobStatus if status.is_final]


async def hold_current_epoch(session: AsyncSession, run_id: str, epoch: int | None) -> bool:
    """Lock the run's row if ``epoch`` is still its placement epoch (None: not fenced).

    Call first in a transaction; the caller's writes in the same transaction then happen
    under the epoch. False (nothing locked, the transaction rolled back): the copy is stale.
    """
    if epoch is None:
        return True
    result = await session.execute(
        update(Run)
        .where(Run.run_id == run_id, Run.placement_epoch == epoch)
        .values(placement_epoch=Run.placement_epoch)
    )
    if getattr(result, "rowcount", 0):
        return True
    await session.rollback()
    return False


async def is_current(session: AsyncSession, run_id: str, epoch: int | None) -> bool:
    """Whether a copy of the run under ``epoch`` may still train (None: not fenced)."""
    if epoch is None:
        return True
    row = (
        await session.execute(select(Run.placement_epoch, Run.status).where(Run.run_id == run_id))
    ).first()
    return row is not None and row.placement_epoch == epoch and row.status not in _FINAL


async def stale_pairs(
    session: AsyncSession, epochs: Sequence[tuple[str, int]]
) -> set[tuple[str, int]]:
    """Of ``(run_id, epoch)`` pairs (units on one engine), those of runs placed again since.

    Units of runs that are over are the run reconciler's: it keeps their output first."""
    if not epochs:
        return set()
    rows = (
        await session.execute(
            select(Run.run_id, Run.placement_epoch).where(
                Run.run_id.in_({run_id for run_id, _ in epochs})
            )
        )
    ).all()
    current = {row.run_id: row.placement_epoch for row in rows}
    return {(run_id, epoch) for run_id, epoch in epochs if current.get(run_id, epoch) > epoch}


async def runs_on_lost_hosts(
    session: AsyncSession, pool: str, seen_before: datetime
) -> list[tuple[str, int]]:
    """``(run_id, epoch)`` of the runs not over that hold a lease on a worker of ``pool``
    whose registration was last renewed before ``seen_before`` (its host is taken for lost).

    Leases on a lost host stay until their run is placed again (``store/capacity.py``), so
    this finds each such run until then."""
    rows = await session.execute(
        select(Run.run_id, Run.placement_epoch)
        .join(RunLease, RunLease.run_id == Run.run_id)
        .join(WorkerHost, WorkerHost.name == RunLease.host)
        .where(
            WorkerHost.pool == pool,
            WorkerHost.last_seen_at < seen_before,
            Run.status.not_in(_FINAL),
        )
        .order_by(Run.run_id)
    )
    return [(row.run_id, row.placement_epoch) for row in rows]


async def seen_since(session: AsyncSession, task_queue: str, since: datetime) -> bool:
    """Whether the worker of ``task_queue`` renewed its registration at or after ``since``."""
    seen = await session.scalar(
        select(WorkerHost.last_seen_at).where(WorkerHost.task_queue == task_queue)
    )
    return seen is not None and seen >= since
