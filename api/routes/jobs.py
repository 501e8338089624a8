"""``/jobs``: create, list, read, update, delete and retry training jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.deps import JobCreatorDep, JobServiceDep
from api.errors import ERROR_RESPONSES
from jobs.requests import JobCreate, JobUpdate
from jobs.responses import JobList, JobResponse
from workflows.models import JobStatus

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post("", status_code=status.HTTP_201_CREATED, responses=ERROR_RESPONSES)
async def create_job(body: JobCreate, creator: JobCreatorDep, jobs: JobServiceDep) -> JobResponse:
    """Create a job and its Temporal Schedule; a job without ``schedule`` runs once, now."""
    return await jobs.view(await creator.create(body), created=True)


@router.get("", responses=ERROR_RESPONSES)
async def list_jobs(
    jobs: JobServiceDep,
    status_filter: JobStatus | None = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
    name: Annotated[
        str | None,
        Query(max_length=255, description="Only jobs whose name contains this (any case)."),
    ] = None,
) -> JobList:
    """Jobs, newest first, optionally only those in one status or with a name like ``name``."""
    rows, total = await jobs.list(status_filter, page, page_size, name)
    return JobList(
        jobs=rows,
        total=total,
        page=page,
        page_size=page_size,
    )


@router.get("/{job_id}", responses=ERROR_RESPONSES)
async def get_job(job_id: str, jobs: JobServiceDep) -> JobResponse:
    return await jobs.get(job_id)


@router.put("/{job_id}", responses=ERROR_RESPONSES)
async def update_job(job_id: str, body: JobUpdate, jobs: JobServiceDep) -> JobResponse:
    """Change the fields sent; ``schedule: null`` makes the job a one-off. 409 while running."""
    return await jobs.view(await jobs.update(job_id, body))


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERROR_RESPONSES)
async def delete_job(job_id: str, jobs: JobServiceDep) -> Response:
    """Remove the job, its schedule and its run records; files on disk are kept."""
    await jobs.delete(job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{job_id}/retry", responses=ERROR_RESPONSES)
async def retry_job(job_id: str, jobs: JobServiceDep) -> JobResponse:
    """Reset the job to ``pending`` and start a new run now. 409 while running."""
    return await jobs.view(await jobs.retry(job_id))
