"""``/jobs/{job_id}/...``: a job's schedule: read it, pause, resume, trigger, backfill."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from api.auth import PrincipalDep
from api.deps import JobServiceDep, SchedulingDep
from api.errors import ERROR_RESPONSES
from api.idempotency import IdempotencyDep
from jobs.requests import BackfillRequest, NoteRequest, TriggerRequest
from jobs.responses import BackfillResponse, JobResponse, ScheduleView

router = APIRouter(prefix="/jobs/{job_id}", tags=["scheduling"])


@router.get("/schedule", responses=ERROR_RESPONSES)
async def get_schedule(job_id: str, scheduling: SchedulingDep) -> ScheduleView:
    """Temporal's view: next firings, skipped counts by reason, pause/resume history."""
    return await scheduling.view(job_id)


@router.post("/pause", responses=ERROR_RESPONSES)
async def pause_job(
    job_id: str,
    scheduling: SchedulingDep,
    jobs: JobServiceDep,
    caller: PrincipalDep,
    body: Annotated[NoteRequest | None, Body()] = None,
) -> JobResponse:
    """Pause the schedule (runs already going keep going); ``note`` says why."""
    await scheduling.set_paused(job_id, True, body.note if body else None, caller.name)
    return await jobs.get(job_id)


@router.post("/resume", responses=ERROR_RESPONSES)
async def resume_job(
    job_id: str,
    scheduling: SchedulingDep,
    jobs: JobServiceDep,
    caller: PrincipalDep,
    body: Annotated[NoteRequest | None, Body()] = None,
) -> JobResponse:
    await scheduling.set_paused(job_id, False, body.note if body else None, caller.name)
    return await jobs.get(job_id)


@router.post("/trigger", responses=ERROR_RESPONSES)
async def trigger_job(
    job_id: str,
    scheduling: SchedulingDep,
    jobs: JobServiceDep,
    caller: PrincipalDep,
    once: IdempotencyDep,
    body: Annotated[TriggerRequest | None, Body()] = None,
) -> JobResponse:
    """Run now, whatever the overlap policy. 409 while a run is active, unless
    ``allow_overlap`` is true."""
    allow_overlap = bool(body and body.allow_overlap)

    async def trigger() -> JobResponse:
        await scheduling.trigger(job_id, allow_overlap=allow_overlap, actor=caller.name)
        return await jobs.get(job_id)

    return await once.run(JobResponse, trigger)


@router.post("/backfill", responses=ERROR_RESPONSES)
async def backfill_job(
    job_id: str,
    body: BackfillRequest,
    scheduling: SchedulingDep,
    caller: PrincipalDep,
    once: IdempotencyDep,
) -> BackfillResponse:
    """Start the runs the schedule would have started between ``start`` and ``end``."""

    async def backfill() -> BackfillResponse:
        return await scheduling.backfill(job_id, body, caller.name)

    return await once.run(BackfillResponse, backfill)
