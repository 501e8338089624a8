"""Steering a job's schedule and reading its run history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from api.deps import JobServiceDep, RunHistoryDep, SchedulingDep
from api.errors import ERROR_RESPONSES
from jobs.run_schemas import (
    BackfillRequest,
    BackfillResponse,
    NoteRequest,
    RunList,
    RunResponse,
    ScheduleView,
    TriggerRequest,
)
from jobs.schemas import JobResponse
from jobs.status import JobStatus

router = APIRouter(prefix="/jobs/{job_id}", tags=["scheduling"])


@router.get("/runs", responses=ERROR_RESPONSES)
async def list_runs(
    job_id: str,
    history: RunHistoryDep,
    status_filter: JobStatus | None = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RunList:
    """One record per run, newest first: trigger, times, attempts, checkpoint, deliveries."""
    return await history.list_runs(job_id, status_filter, page, page_size)


@router.get("/runs/{run_id}", responses=ERROR_RESPONSES)
async def get_run(job_id: str, run_id: str, history: RunHistoryDep) -> RunResponse:
    return await history.get_run(job_id, run_id)


@router.get("/schedule", responses=ERROR_RESPONSES)
async def get_schedule(job_id: str, scheduling: SchedulingDep) -> ScheduleView:
    """Temporal's view: next firings, skipped counts by reason, pause/resume history."""
    return await scheduling.view(job_id)


@router.post("/pause", responses=ERROR_RESPONSES)
async def pause_job(
    job_id: str,
    scheduling: SchedulingDep,
    jobs: JobServiceDep,
    body: Annotated[NoteRequest | None, Body()] = None,
) -> JobResponse:
    """Pause the schedule (runs already going keep going); ``note`` says why."""
    await scheduling.set_paused(job_id, True, body.note if body else None)
    return await jobs.get(job_id)


@router.post("/resume", responses=ERROR_RESPONSES)
async def resume_job(
    job_id: str,
    scheduling: SchedulingDep,
    jobs: JobServiceDep,
    body: Annotated[NoteRequest | None, Body()] = None,
) -> JobResponse:
    await scheduling.set_paused(job_id, False, body.note if body else None)
    return await jobs.get(job_id)


@router.post("/trigger", responses=ERROR_RESPONSES)
async def trigger_job(
    job_id: str,
    scheduling: SchedulingDep,
    jobs: JobServiceDep,
    body: Annotated[TriggerRequest | None, Body()] = None,
) -> JobResponse:
    """Run now, whatever the overlap policy. 409 while a run is active, unless
    ``allow_overlap`` is true."""
    await scheduling.trigger(job_id, allow_overlap=bool(body and body.allow_overlap))
    return await jobs.get(job_id)


@router.post("/backfill", responses=ERROR_RESPONSES)
async def backfill_job(
    job_id: str, body: BackfillRequest, scheduling: SchedulingDep
) -> BackfillResponse:
    """Start the runs the schedule would have started between ``start`` and ``end``."""
    return await scheduling.backfill(job_id, body)
