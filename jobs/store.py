"""SQL reads and writes of jobs and runs. Functions take a session; callers own transactions."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.errors import JobNotFound
from jobs.models import (
    Attempt,
    Backfill,
    IssuedJobId,
    Job,
    NotificationDelivery,
    Run,
    ScheduleSync,
    utcnow,
)
from jobs.schemas import JobCreate
from jobs.status import JobStatus

_MAX_ID_DRAWS = 32


def draw_job_id() -> str:
    return f"train-{secrets.token_hex(4)}"


async def issue_job_id(session: AsyncSession) -> str:
    """Reserve a fresh job id for good (committed), drawing again on a collision."""
    for _ in range(_MAX_ID_DRAWS):
        job_id = draw_job_id()
        session.add(IssuedJobId(job_id=job_id, issued_at=utcnow()))
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            continue
        return job_id
    raise RuntimeError("could not draw an unused job id")


def new_job(job_id: str, body: JobCreate, **extra: Any) -> Job:
    """The row of a job created from ``body``: pending, no runs yet."""
    now = utcnow()
    fields = body.model_dump()
    fields["checkpoint_path"] = body.checkpoint_path or f"/checkpoints/{job_id}"
    return Job(
        job_id=job_id,
        **fields,
        retry_count=0,
        status=JobStatus.PENDING.value,
        created_at=now,
        updated_at=now,
        **extra,
    )


async def get_job(session: AsyncSession, job_id: str) -> Job:
    job = await session.get(Job, job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


async def name_taken(session: AsyncSession, name: str, *, except_job: str | None = None) -> bool:
    query = select(Job.job_id).where(Job.name == name)
    if except_job is not None:
        query = query.where(Job.job_id != except_job)
    return (await session.scalar(query.limit(1))) is not None


async def list_jobs(
    session: AsyncSession, status: JobStatus | None, page: int, page_size: int
) -> tuple[Sequence[Job], int]:
    """One page of jobs, newest first, and the total matching the filter."""
    query = select(Job)
    count = select(func.count()).select_from(Job)
    if status is not None:
        query = query.where(Job.status == status.value)
        count = count.where(Job.status == status.value)
    query = query.order_by(Job.created_at.desc(), Job.job_id.desc())
    rows = await session.scalars(query.offset((page - 1) * page_size).limit(page_size))
    total = await session.scalar(count)
    return rows.all(), int(total or 0)


async def count_by_status(session: AsyncSession) -> dict[JobStatus, int]:
    """Jobs per status by SQL aggregate (index-only on the status index)."""
    result = await session.execute(select(Job.status, func.count()).group_by(Job.status))
    counts = dict.fromkeys(JobStatus, 0)
    for status, number in result.all():
        counts[JobStatus(status)] = int(number)
    return counts


async def count_schedule_states(session: AsyncSession) -> tuple[int, int]:
    """Jobs whose schedule is paused, and jobs with an active (unpaused) cron schedule."""
    paused = await session.scalar(select(func.count()).select_from(Job).where(Job.paused))
    scheduled = await session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.schedule.is_not(None), Job.paused.is_(False))
    )
    return int(paused or 0), int(scheduled or 0)


async def delete_job_rows(session: AsyncSession, job_id: str) -> None:
    await session.execute(delete(Run).where(Run.job_id == job_id))
    await session.execute(delete(Job).where(Job.job_id == job_id))


# The schedule-sync journal -------------------------------------------------------------------


async def journal_schedule_change(session: AsyncSession, job_id: str) -> None:
    """Record (and commit) that this job's schedule is about to change."""
    await session.merge(ScheduleSync(job_id=job_id, requested_at=utcnow()))
    await session.commit()


async def clear_schedule_change(session: AsyncSession, job_id: str) -> None:
    await session.execute(delete(ScheduleSync).where(ScheduleSync.job_id == job_id))
    await session.commit()


async def pending_schedule_changes(session: AsyncSession, older_than: timedelta) -> list[str]:
    cutoff = utcnow() - older_than
    rows = await session.scalars(
        select(ScheduleSync.job_id).where(ScheduleSync.requested_at <= cutoff)
    )
    return list(rows.all())


# Run bookkeeping (called by activities) ------------------------------------------------------


async def start_run(
    session: AsyncSession,
    job_id: str,
    run_id: str,
    execution_id: str,
    started_at: datetime,
    default_trigger: str,
    scheduled_at: datetime | None = None,
) -> tuple[Job, Run]:
    """Create the run record (once per execution) and make it the job's latest, running run."""
    job = await get_job(session, job_id)
    run = await session.get(Run, run_id)
    if run is not None and run.execution_id != execution_id:
        # A new execution reusing a closed run's workflow id: the record follows the new one,
        # and the old run's deliveries must not pass for the new run's.
        await session.execute(
            delete(NotificationDelivery).where(NotificationDelivery.run_id == run_id)
        )
        await session.delete(run)
        await session.flush()
        run = None
    if run is None:
        trigger = await _trigger_of(session, job, default_trigger, scheduled_at, started_at)
        run = Run(
            run_id=run_id,
            execution_id=execution_id,
            job_id=job_id,
            trigger=trigger,
            scheduled_at=scheduled_at,
            status=JobStatus.RUNNING.value,
            attempt=1,
            retry_count=0,
            exit_code=None,
            error_message=None,
            completed_at=None,
            started_at=started_at,
            updated_at=started_at,
        )
        session.add(run)
        if trigger == job.pending_trigger:
            job.pending_trigger = None
        job.latest_run_id = run_id
        job.status = JobStatus.RUNNING.value
        job.retry_count = 0
        job.error_message = None
        job.started_at = started_at
        job.completed_at = None
        job.updated_at = utcnow()
    await session.commit()
    return job, run


# A firing this much older than its start is a backfill, not the schedule catching up live.
_BACKFILL_LAG = timedelta(seconds=60)


async def _trigger_of(
    session: AsyncSession,
    job: Job,
    default_trigger: str,
    scheduled_at: datetime | None,
    started_at: datetime,
) -> str:
    """Why a run started: a recorded intent (backfill range, retry, manual), else the default."""
    if scheduled_at is not None and started_at - scheduled_at > _BACKFILL_LAG:
        backfill = await session.scalar(
            select(Backfill.id)
            .where(
                Backfill.job_id == job.job_id,
                Backfill.start_at <= scheduled_at,
                Backfill.end_at >= scheduled_at,
            )
            .limit(1)
        )
        if backfill is not None:
            return "backfill"
    if default_trigger == "schedule" and job.pending_trigger:
        return job.pending_trigger
    return default_trigger


async def record_run_status(
    session: AsyncSession,
    *,
    job_id: str,
    run_id: str,
    status: JobStatus,
    attempt: int,
    retry_count: int,
    at: datetime,
    error_message: str | None,
    exit_code: int | None,
) -> bool:
    """Apply one transition of a run. Returns False when the job or run no longer exists.

    Every field is assigned from the update itself (timestamps come from the workflow), so a
    retried activity that applies the same update again changes nothing.
    """
    run = await session.get(Run, run_id)
    if run is None or run.job_id != job_id:
        return False
    run.status = status.value
    run.attempt = attempt
    run.retry_count = retry_count
    run.error_message = error_message
    if exit_code is not None:
        run.exit_code = exit_code
    run.completed_at = at if status.is_final else None
    run.updated_at = at

    job = await session.get(Job, job_id)
    if job is not None and job.latest_run_id == run_id:
        job.status = status.value
        job.retry_count = retry_count
        job.error_message = error_message
        job.completed_at = at if status.is_final else None
        job.updated_at = at
    await session.commit()
    return True


async def record_progress(
    session: AsyncSession, run_id: str, progress: dict[str, Any], at: datetime
) -> None:
    run = await session.get(Run, run_id)
    if run is not None:
        run.progress = progress
        run.progress_updated_at = at
        await session.commit()


async def record_attempt_start(
    session: AsyncSession, job_id: str, run_id: str, attempt: int, at: datetime
) -> None:
    """Record that an attempt started (once; a reattached attempt keeps its first start)."""
    run = await session.get(Run, run_id)
    if run is not None and await session.get(Attempt, (run_id, attempt)) is None:
        session.add(Attempt(run_id=run_id, attempt=attempt, job_id=job_id, started_at=at))
        await session.commit()


async def record_attempt_end(
    session: AsyncSession, run_id: str, attempt: int, exit_code: int | None, at: datetime
) -> None:
    row = await session.get(Attempt, (run_id, attempt))
    if row is not None:
        row.exit_code = exit_code
        row.ended_at = at
        await session.commit()


async def run_of(session: AsyncSession, run_id: str | None) -> Run | None:
    return await session.get(Run, run_id) if run_id else None
