"""Registering a job from an SDK start: a run for an unknown job id that carries the job's spec.

Python users may start ``TrainingJobWorkflow`` directly with the Temporal SDK. If the job id
is new and the input carries a full job spec (the body of ``POST /jobs``), the job is
registered as a one-off job with its (spec-less) schedule, exactly as the API would have.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs import store
from jobs.errors import DuplicateJobName, InvalidInput
from jobs.models import IssuedJobId, utcnow
from jobs.schedules import JobSchedules
from jobs.schemas import JobCreate

JOB_ID_FORMAT = re.compile(r"train-[0-9a-f]{8}")


async def register_job(
    sessions: async_sessionmaker[AsyncSession],
    schedules: JobSchedules,
    job_id: str,
    spec: dict[str, Any],
) -> None:
    """Create the job row and its schedule for an SDK-started run of a new job."""
    if not JOB_ID_FORMAT.fullmatch(job_id):
        raise InvalidInput(f"job_id {job_id!r} must look like train-1a2b3c4d (8 hex digits)")
    try:
        body = JobCreate.model_validate({**spec, "schedule": None})
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise InvalidInput(f"the job spec in the workflow input is invalid: {problems}") from None
    now = utcnow()
    async with sessions() as session:
        if await session.get(IssuedJobId, job_id) is not None:
            raise InvalidInput(f"job id {job_id} was used before; job ids are never reused")
        if await store.name_taken(session, body.name):
            raise DuplicateJobName(body.name)
        session.add(IssuedJobId(job_id=job_id, issued_at=now))
        job = store.new_job(job_id, body)
        session.add(job)
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            raise InvalidInput(f"job {job_id} or its name was registered concurrently") from None
        await store.journal_schedule_change(session, job_id)
        await schedules.create(job, trigger_now=False)
        await store.clear_schedule_change(session, job_id)
