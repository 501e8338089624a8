"""How jobs, runs and checkpoints look in API responses."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from jobs.responses import Delivery, JobResponse, Progress
from store import runs as run_store
from store.capacity import queue_positions
from store.deliveries import deliveries_of_runs
from store.models import Job, Run
from workflows.models import JobStatus


def progress_of(run: Run | None) -> Progress | None:
    """The run's last PROGRESS report, with the percentage done when the total is known."""
    if run is None or not run.progress:
        return None
    report = run.progress
    step, total = report.get("step"), report.get("total")
    percent = round(100.0 * step / total, 2) if step is not None and total else None
    return Progress(
        step=step,
        total=total,
        percent=percent,
        epoch=report.get("epoch"),
        metrics=report.get("metrics") or {},
        updated_at=run.progress_updated_at,
    )


def job_response(job: Job, run: Run | None, positions: dict[str, int] | None = None) -> JobResponse:
    response = JobResponse.model_validate(job)
    response.progress = progress_of(run)
    if run is not None and run.status == JobStatus.QUEUED.value:
        response.queue_reason = run.queue_reason
        response.queue_position = (positions or {}).get(run.run_id)
    return response


async def job_view(session: AsyncSession, job: Job) -> JobResponse:
    return (await job_views(session, [job]))[0]


async def job_views(session: AsyncSession, jobs: Sequence[Job]) -> list[JobResponse]:
    """Responses for a page of jobs, their latest runs fetched in one query."""
    runs = await run_store.runs_by_id(
        session, [job.latest_run_id for job in jobs if job.latest_run_id]
    )
    queued = [run.run_id for run in runs.values() if run.status == JobStatus.QUEUED.value]
    positions = await queue_positions(session, queued)
    return [job_response(job, runs.get(job.latest_run_id or ""), positions) for job in jobs]


async def deliveries(session: AsyncSession, run_id: str | None) -> list[Delivery]:
    """Notifications sent (or failed) about one run, oldest first."""
    if run_id is None:
        return []
    rows = (await deliveries_of_runs(session, [run_id]))[run_id]
    return [Delivery.model_validate(row) for row in rows]
