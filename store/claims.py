"""A job's one active run: the claim, taken and released with compare-and-set UPDATEs.

A run is active from its claim to its final status. The claim is ``jobs.active_run_id``: it is
taken by ``UPDATE jobs SET active_run_id = :run WHERE job_id = :job AND active_run_id IS NULL
AND status is not active``, and the one UPDATE that changed a row won. SQLite serializes
writers and PostgreSQL re-checks the WHERE clause of an UPDATE that waited for the row's lock,
so two API replicas or workers can never both win. Only the claim's own run releases it
(``WHERE active_run_id = :run``): when it records its final status, when its start fails, or,
for a claim with no workflow behind it, the worker's reconciler after CLAIM_GRACE_SECONDS.

Runs started before claims existed hold none; their status (``running``, ``retrying``) still
makes the job active, which is why the status is part of the condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Job, utcnow
from workflows.models import JobStatus

# The statuses in which a run owns its job whether or not it holds a claim.
ACTIVE_STATUSES = tuple(status.value for status in JobStatus if status.is_active)
# Bound on the claims one reconciler tick looks at.
STALE_CLAIMS_PER_TICK = 500


def has_active_run(job: Job) -> bool:
    """The one notion of "a run is active" for a job: a claim, or an active status."""
    return job.active_run_id is not None or JobStatus(job.status).is_active


def _claimable(job_id: str, run_id: str) -> ColumnElement[bool]:
    free = and_(Job.active_run_id.is_(None), Job.status.not_in(ACTIVE_STATUSES))
    # Claiming again with the same run (a retried activity, the API's own claim) succeeds.
    return and_(Job.job_id == job_id, or_(free, Job.active_run_id == run_id))


async def claim(session: AsyncSession, job_id: str, run_id: str, **changes: Any) -> bool:
    """Make ``run_id`` the job's active run (commits); False if another run is active.

    ``changes`` are written to the job in the same UPDATE (retry resets the job with them).
    """
    statement = (
        update(Job)
        .where(_claimable(job_id, run_id))
        .values(active_run_id=run_id, claimed_at=utcnow(), **changes)
        .execution_options(synchronize_session=False)
    )
    result: CursorResult[Any] = await session.execute(statement)  # type: ignore[assignment]
    await session.commit()
    return result.rowcount == 1


async def release(session: AsyncSession, job_id: str, run_id: str, **changes: Any) -> bool:
    """Release the claim if ``run_id`` holds it; the caller commits. True if it did."""
    statement = (
        update(Job)
        .where(Job.job_id == job_id, Job.active_run_id == run_id)
        .values(active_run_id=None, claimed_at=None, **changes)
        .execution_options(synchronize_session=False)
    )
    result: CursorResult[Any] = await session.execute(statement)  # type: ignore[assignment]
    return result.rowcount == 1


async def claims_older_than(session: AsyncSession, before: datetime) -> Sequence[tuple[str, str]]:
    """``(job_id, run_id)`` of claims taken before ``before`` (at most a tick's worth)."""
    rows = await session.execute(
        select(Job.job_id, Job.active_run_id)
        .where(Job.claimed_at < before, Job.active_run_id.is_not(None))
        .order_by(Job.claimed_at)
        .limit(STALE_CLAIMS_PER_TICK)
    )
    return [(job_id, run_id) for job_id, run_id in rows.all() if run_id is not None]
