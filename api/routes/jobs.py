"""``/jobs``: create, list, read, update, delete and retry training jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from api.auth import PrincipalDep
from api.deps import JobCreatorDep, JobServiceDep
from api.errors import CONDITIONAL_RESPONSES, ERROR_RESPONSES, MAX_PAGE
from api.idempotency import IdempotencyDep
from jobs.definition_sync import etag, etag_of
from jobs.requests import JobCreate, JobUpdate
from jobs.responses import JobList, JobResponse
from workflows.models import JobStatus

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post("", status_code=status.HTTP_201_CREATED, responses=ERROR_RESPONSES)
async def create_job(
    body: JobCreate,
    creator: JobCreatorDep,
    jobs: JobServiceDep,
    caller: PrincipalDep,
    once: IdempotencyDep,
    response: Response,
) -> JobResponse:
    """Create a job and its Temporal Schedule; a job without ``schedule`` runs once, now."""

    async def create() -> JobResponse:
        return await jobs.view(await creator.create(body, caller.name), created=True)

    answer = await once.run(JobResponse, create, status.HTTP_201_CREATED)
    # A new job's definition is at its first version (an idempotent replay names it too).
    response.headers["ETag"] = etag_of(answer.job_id, 1)
    return answer


@router.get("", responses=ERROR_RESPONSES)
async def list_jobs(
    jobs: JobServiceDep,
    status_filter: JobStatus | None = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
    name: Annotated[
        str | None,
        Query(max_length=255, description="Only jobs whose name contains this (any case)."),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(max_length=1024, description="A next_cursor from an earlier page; replaces page."),
    ] = None,
) -> JobList:
    """Jobs, newest first, optionally only those in one status or with a name like ``name``."""
    rows, total, following = await jobs.list(status_filter, page, page_size, name, cursor)
    return JobList(
        jobs=rows,
        total=total,
        page=page,
        page_size=page_size,
        next_cursor=following,
    )


IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description="An ETag of the job: the change is made only if it is still current (412).",
    ),
]


@router.get("/{job_id}", responses=ERROR_RESPONSES)
async def get_job(job_id: str, jobs: JobServiceDep, response: Response) -> JobResponse:
    """The job; its ``ETag`` names the version of its definition, for ``If-Match``."""
    job = await jobs.read(job_id)
    response.headers["ETag"] = etag(job)
    return await jobs.view(job)


@router.put("/{job_id}", responses=CONDITIONAL_RESPONSES)
async def update_job(
    job_id: str,
    body: JobUpdate,
    jobs: JobServiceDep,
    caller: PrincipalDep,
    response: Response,
    if_match: IfMatch = None,
) -> JobResponse:
    """Change the fields sent; ``schedule: null`` makes the job a one-off. 409 while running."""
    job = await jobs.update(job_id, body, caller.name, if_match)
    response.headers["ETag"] = etag(job)
    return await jobs.view(job)


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT, responses=CONDITIONAL_RESPONSES)
async def delete_job(
    job_id: str, jobs: JobServiceDep, caller: PrincipalDep, if_match: IfMatch = None
) -> Response:
    """Remove the job, its schedule and its run records; files on disk are kept."""
    await jobs.delete(job_id, caller.name, if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{job_id}/retry", responses=ERROR_RESPONSES)
async def retry_job(
    job_id: str, jobs: JobServiceDep, caller: PrincipalDep, once: IdempotencyDep
) -> JobResponse:
    """Reset the job to ``pending`` and start a new run now. 409 while running."""

    async def retry() -> JobResponse:
        return await jobs.view(await jobs.retry(job_id, caller.name))

    return await once.run(JobResponse, retry)
