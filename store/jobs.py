"""SQL reads and writes of jobs. Functions take a session; callers own transactions."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import JobNotFound
from store.counters import by_status, read_counters
from store.models import IssuedJobId, Job, LogChunk, MetricHistory, MetricPoint, Run, utcnow
from workflows.models import JobStatus

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


async def claim_job_id(session: AsyncSession, job_id: str) -> bool:
    """Reserve a caller's job id for good (committed); False if it was ever issued."""
    session.add(IssuedJobId(job_id=job_id, issued_at=utcnow()))
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return False
    return True


def default_checkpoint_path(job_id: str) -> str:
    return f"/checkpoints/{job_id}"


def new_job(job_id: str, fields: dict[str, Any], **extra: Any) -> Job:
    """The row of a job created from a validated spec's ``fields``: pending, no runs yet."""
    now = utcnow()
    checkpoint_path = fields.get("checkpoint_path") or default_checkpoint_path(job_id)
    fields = {**fields, "checkpoint_path": checkpoint_path}
    return Job(
        job_id=job_id,
        **fields,
        retry_count=0,
        status=JobStatus.PENDING.value,
        created_at=now,
        updated_at=now,
        **extra,
    )


async def find_job(session: AsyncSession, job_id: str) -> Job | None:
    return await session.get(Job, job_id)


async def get_job(session: AsyncSession, job_id: str) -> Job:
    job = await session.get(Job, job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


async def lock_job(session: AsyncSession, job_id: str) -> bool:
    """Take the job row's write lock until the transaction ends; False if there is no row.

    An UPDATE that changes nothing, so the same statement locks on both backends: the row on
    PostgreSQL (``SELECT ... FOR UPDATE`` would do too), the database on SQLite (which has no
    row locks and ignores ``FOR UPDATE``).
    """
    locked = await session.execute(
        update(Job)
        .where(Job.job_id == job_id)
        .values(version=Job.version)
        .execution_options(synchronize_session=False)
    )
    return bool(locked.rowcount)  # type: ignore[attr-defined]


async def update_definition(
    session: AsyncSession, job_id: str, read_version: int, changes: dict[str, Any]
) -> bool:
    """Compare-and-set: apply ``changes`` and bump the version if it is still ``read_version``.

    The row stays locked until the caller's transaction ends. Returns False (nothing
    written) if another writer bumped the version first, or the job is gone.
    """
    written = await session.execute(
        update(Job)
        .where(Job.job_id == job_id, Job.version == read_version)
        .values(**changes, version=read_version + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(written.rowcount)  # type: ignore[attr-defined]


async def get_job_fresh(session: AsyncSession, job_id: str) -> Job:
    """The row as the database has it now (in this transaction), not as the session cached it."""
    job = await session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise JobNotFound(job_id)
    return job


async def name_taken(session: AsyncSession, name: str, *, except_job: str | None = None) -> bool:
    query = select(Job.job_id).where(Job.name == name)
    if except_job is not None:
        query = query.where(Job.job_id != except_job)
    return (await session.scalar(query.limit(1))) is not None


async def checkpoint_path_nested(
    session: AsyncSession, path: str, *, except_job: str | None = None
) -> str | None:
    """Another job's checkpoint path that lies inside ``path`` or contains it, if any.

    Equal paths are fine (jobs may share a directory); nested ones are not: a container
    could swap the inner directory for a link before the other job's mount is made.
    """
    parts = path.strip("/").split("/")
    ancestors = ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]
    query = select(Job.checkpoint_path).where(
        Job.checkpoint_path.startswith(path.rstrip("/") + "/", autoescape=True)
        | Job.checkpoint_path.in_(ancestors)
    )
    if except_job is not None:
        query = query.where(Job.job_id != except_job)
    found: str | None = await session.scalar(query.limit(1))
    return found


JobKey = tuple[datetime, str]


def job_key(job: Job) -> JobKey:
    """Where a job sits in the order of lists (newest first): the keyset cursor's content."""
    return job.created_at, job.job_id


async def list_jobs(
    session: AsyncSession,
    status: JobStatus | None,
    page: int,
    page_size: int,
    name: str | None = None,
    after: JobKey | None = None,
) -> tuple[Sequence[Job], int]:
    """One page of jobs, newest first, and the total matching the filters.

    ``after`` (a :func:`job_key`) starts the page right after that job instead of at
    ``page``: a keyset page, as fast deep in the list as at its top. ``name`` matches
    anywhere in the name, ignoring case (``%`` and ``_`` match themselves). The total
    comes from the counters unless ``name`` is given (a substring cannot be counted ahead).
    """
    query = select(Job)
    if status is not None:
        query = query.where(Job.status == status.value)
    if name:
        query = query.where(func.lower(Job.name).contains(name.lower(), autoescape=True))
    if after is not None:
        created_at, job_id = after
        # The first condition alone bounds an index range scan (an OR would not).
        query = query.where(
            Job.created_at <= created_at, or_(Job.created_at < created_at, Job.job_id < job_id)
        )
    else:
        query = query.offset((page - 1) * page_size)
    query = query.order_by(Job.created_at.desc(), Job.job_id.desc())
    rows = (await session.scalars(query.limit(page_size))).all()
    if name:
        count = (
            select(func.count())
            .select_from(Job)
            .where(func.lower(Job.name).contains(name.lower(), autoescape=True))
        )
        if status is not None:
            count = count.where(Job.status == status.value)
        return rows, int(await session.scalar(count) or 0)
    counts = await count_by_status(session)
    return rows, counts[status] if status is not None else sum(counts.values())


async def count_by_status(session: AsyncSession) -> dict[JobStatus, int]:
    """Jobs per status, from the counters."""
    return by_status(await read_counters(session), "jobs")


async def count_schedule_states(session: AsyncSession) -> tuple[int, int]:
    """Jobs whose schedule is paused, and jobs with an active (unpaused) cron schedule."""
    counters = await read_counters(session)
    return counters.get("jobs:paused", 0), counters.get("jobs:scheduled", 0)


async def delete_job_rows(session: AsyncSession, job_id: str) -> None:
    # The foreign keys cascade too; deleting the metric history first, by the job's runs,
    # does not depend on the connection enforcing them.
    runs_of_job = select(Run.run_id).where(Run.job_id == job_id)
    await session.execute(delete(MetricPoint).where(MetricPoint.run_id.in_(runs_of_job)))
    await session.execute(delete(MetricHistory).where(MetricHistory.job_id == job_id))
    await session.execute(delete(LogChunk).where(LogChunk.job_id == job_id))
    await session.execute(delete(Run).where(Run.job_id == job_id))
    await session.execute(delete(Job).where(Job.job_id == job_id))
