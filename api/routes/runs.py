"""``/jobs/{job_id}/...``: a job's runs: their history, and the current run's cancel, logs and
checkpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from api.auth import PrincipalDep
from api.deps import RunHistoryDep, RunServiceDep
from api.errors import ERROR_RESPONSES, MAX_PAGE
from jobs.responses import CheckpointList, JobResponse, RunList, RunMetrics, RunResponse
from jobs.strict import QueryBool
from workflows.models import JobStatus

router = APIRouter(prefix="/jobs/{job_id}", tags=["runs"])


@router.get("/runs", responses=ERROR_RESPONSES)
async def list_runs(
    job_id: str,
    history: RunHistoryDep,
    status_filter: JobStatus | None = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None,
        Query(max_length=1024, description="A next_cursor from an earlier page; replaces page."),
    ] = None,
) -> RunList:
    """One record per run, newest first: trigger, times, attempts, checkpoint, deliveries."""
    return await history.list_runs(job_id, status_filter, page, page_size, cursor)


@router.get("/runs/{run_id}", responses=ERROR_RESPONSES)
async def get_run(job_id: str, run_id: str, history: RunHistoryDep) -> RunResponse:
    return await history.get_run(job_id, run_id)


@router.get("/runs/{run_id}/metrics", responses=ERROR_RESPONSES)
async def get_run_metrics(job_id: str, run_id: str, history: RunHistoryDep) -> RunMetrics:
    """The run's metrics as the trainer reported them, one series per name ordered by step.

    At most 2,000 points per metric (longer series are downsampled as they are written,
    keeping the first and last points and each stretch's extremes) and 50 names per run.
    """
    return await history.metrics(job_id, run_id)


@router.post("/cancel", responses=ERROR_RESPONSES)
async def cancel_job(job_id: str, runs: RunServiceDep, caller: PrincipalDep) -> JobResponse:
    """Stop the running run gracefully (SIGTERM, grace period, SIGKILL); status ``cancelled``.

    A scheduled job keeps its schedule. 409 when nothing is running.
    """
    return await runs.cancel(job_id, caller.name)


@router.get(
    "/logs",
    response_class=PlainTextResponse,
    response_model=None,
    responses={**ERROR_RESPONSES, 200: {"content": {"text/plain": {}}}},
)
async def job_logs(
    job_id: str,
    runs: RunServiceDep,
    tail: Annotated[int | None, Query(ge=0, le=100_000)] = None,
    follow: QueryBool = False,
) -> PlainTextResponse | StreamingResponse:
    """The latest run's output (every attempt, failed ones included); ``follow`` streams it."""
    if follow:
        # Resolve the job first, so an unknown job is a 404 rather than an empty stream.
        await runs.latest_run(job_id)
        return StreamingResponse(runs.follow_logs(job_id, tail), media_type="text/plain")
    return PlainTextResponse(await runs.log_text(job_id, tail))


@router.get("/checkpoints", responses=ERROR_RESPONSES)
async def job_checkpoints(job_id: str, runs: RunServiceDep) -> CheckpointList:
    """Every recorded checkpoint of the job, newest first, and the one a resume would use."""
    return await runs.checkpoints(job_id)
