"""SQL reads and writes of runs and their attempts (written by the worker's activities)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store import claims
from store.jobs import get_job
from store.models import Attempt, Backfill, Job, NotificationDelivery, Run, utcnow
from workflows.models import JobStatus


async def start_run(
    session: AsyncSession,
    job_id: str,
    run_id: str,
    execution_id: str,
    started_at: datetime,
    default_trigger: str,
    scheduled_at: datetime | None = None,
    trigger: str | None = None,
    actor: str | None = None,
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
        if trigger is None:
            trigger = await trigger_of(session, job, default_trigger, scheduled_at, started_at)
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
        if actor is not None:
            run.triggered_by = actor  # the API's own start: who asked is in the run's input
        elif trigger == job.pending_trigger:
            # A run triggered through the schedule by an API from before direct starts.
            run.triggered_by = job.pending_actor
            job.pending_trigger = job.pending_actor = None
        elif trigger == "backfill":
            run.triggered_by = await _backfill_actor(session, job_id, scheduled_at)
        session.add(run)
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


async def trigger_of(
    session: AsyncSession,
    job: Job,
    default_trigger: str,
    scheduled_at: datetime | None,
    started_at: datetime,
) -> str:
    """Why a run the API did not start started: a backfill's range, else the default.

    ``pending_trigger`` is no longer written (the API starts manual runs and retries itself,
    with the trigger in their input); it is still read for runs triggered through the
    schedule by an API from before 0.4, which may start after the upgrade.
    """
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


async def _backfill_actor(
    session: AsyncSession, job_id: str, scheduled_at: datetime | None
) -> str | None:
    actor: str | None = await session.scalar(
        select(Backfill.actor)
        .where(
            Backfill.job_id == job_id,
            Backfill.start_at <= scheduled_at,
            Backfill.end_at >= scheduled_at,
        )
        .order_by(Backfill.id.desc())
        .limit(1)
    )
    return actor


async def mark_cancel_requested(session: AsyncSession, run_id: str, actor: str) -> None:
    """Record who asked to cancel a run (the caller commits)."""
    run = await session.get(Run, run_id)
    if run is not None:
        run.cancelled_by = actor


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

    if status.is_final:
        # Only the claim's own run releases it (a run started with allow_overlap holds none).
        await claims.release(session, job_id, run_id)
    job = await session.get(Job, job_id)
    if job is not None and job.latest_run_id == run_id:
        job.status = status.value
        job.retry_count = retry_count
        job.error_message = error_message
        job.completed_at = at if status.is_final else None
        job.updated_at = at
    await session.commit()
    return True


async def finish_run_if_active(
    session: AsyncSession,
    *,
    job_id: str,
    run_id: str,
    status: JobStatus,
    at: datetime,
    error_message: str | None,
) -> bool:
    """Record a final status for a run that SQL still shows active (commits).

    Compare-and-set: the UPDATE applies only while the run (and its job, if this is its
    latest run) is still active, so a final status the run wrote itself after the caller
    read it always wins. Returns whether the run was changed. The job row is written first,
    as the ORM does, so the counter rows are locked in the same order as by the activities.
    """
    active = [value.value for value in JobStatus if not value.is_final]
    await session.execute(
        update(Job)
        .where(Job.job_id == job_id, Job.latest_run_id == run_id, Job.status.in_(active))
        .values(status=status.value, error_message=error_message, completed_at=at, updated_at=at)
        .execution_options(synchronize_session=False)
    )
    changed = await session.execute(
        update(Run)
        .where(Run.run_id == run_id, Run.job_id == job_id, Run.status.in_(active))
        .values(status=status.value, error_message=error_message, completed_at=at, updated_at=at)
        .execution_options(synchronize_session=False)
    )
    if getattr(changed, "rowcount", 0) != 1:
        await session.rollback()  # the run ended on its own meanwhile: its status stands
        return False
    # The run is over: its claim (if it holds the job's) goes with it, as in record_run_status.
    await claims.release(session, job_id, run_id)
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


async def find_attempt(session: AsyncSession, run_id: str, attempt: int) -> Attempt | None:
    return await session.get(Attempt, (run_id, attempt))


async def record_attempt_end(
    session: AsyncSession, run_id: str, attempt: int, exit_code: int | None, at: datetime
) -> None:
    """Record how an attempt ended; an exit code once recorded stays (retries report it)."""
    row = await session.get(Attempt, (run_id, attempt))
    if row is not None and row.exit_code is None:
        row.exit_code = exit_code
        row.ended_at = at
        await session.commit()


async def run_of(session: AsyncSession, run_id: str | None) -> Run | None:
    return await session.get(Run, run_id) if run_id else None


async def find_run(session: AsyncSession, run_id: str) -> Run | None:
    return await session.get(Run, run_id)


async def runs_by_id(session: AsyncSession, run_ids: Sequence[str]) -> dict[str, Run]:
    """The runs with these ids, in one query."""
    if not run_ids:
        return {}
    rows = await session.scalars(select(Run).where(Run.run_id.in_(run_ids)))
    return {run.run_id: run for run in rows}


RunKey = tuple[datetime, str]


def run_key(run: Run) -> RunKey:
    """Where a run sits in a job's run list (newest first): the keyset cursor's content."""
    return run.started_at, run.run_id


async def list_runs(
    session: AsyncSession,
    job_id: str,
    status: JobStatus | None,
    page: int,
    page_size: int,
    after: RunKey | None = None,
) -> tuple[Sequence[Run], int]:
    """One page of a job's runs, newest first, and the total matching the filter.

    ``after`` (a :func:`run_key`) starts the page right after that run instead of at
    ``page``. The total counts this job's runs only, on the (job_id, status, started_at)
    index, so it does not grow with other jobs' runs.
    """
    query = select(Run).where(Run.job_id == job_id)
    count = select(func.count()).select_from(Run).where(Run.job_id == job_id)
    if status is not None:
        query = query.where(Run.status == status.value)
        count = count.where(Run.status == status.value)
    if after is not None:
        started_at, run_id = after
        # The first condition alone bounds an index range scan (an OR would not).
        query = query.where(
            Run.started_at <= started_at, or_(Run.started_at < started_at, Run.run_id < run_id)
        )
    else:
        query = query.offset((page - 1) * page_size)
    query = query.order_by(Run.started_at.desc(), Run.run_id.desc())
    runs = (await session.scalars(query.limit(page_size))).all()
    return runs, int(await session.scalar(count) or 0)


async def attempts_of_runs(
    session: AsyncSession, run_ids: Sequence[str]
) -> dict[str, list[Attempt]]:
    """Each run's attempts in order (one query)."""
    found: dict[str, list[Attempt]] = {run_id: [] for run_id in run_ids}
    if run_ids:
        rows = await session.scalars(
            select(Attempt).where(Attempt.run_id.in_(run_ids)).order_by(Attempt.attempt)
        )
        for row in rows:
            found[row.run_id].append(row)
    return found


async def active_runs(session: AsyncSession) -> Sequence[Run]:
    """Runs not yet in a final status."""
    active = [status.value for status in JobStatus if status.is_active]
    return (await session.scalars(select(Run).where(Run.status.in_(active)))).all()
