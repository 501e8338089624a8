"""A job's run history as the API shows it: one record per run, with everything about it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import OrchestratorError
from core.settings import Settings
from jobs.paging import decode_cursor, encode_cursor
from jobs.responses import (
    Attempt as AttemptView,
)
from jobs.responses import (
    CheckpointResponse,
    Delivery,
    MetricSeries,
    RunList,
    RunMetrics,
    RunResponse,
)
from jobs.views import progress_of
from store import checkpoints, metric_history
from store import jobs as job_store
from store import runs as run_store
from store.capacity import queue_positions
from store.deliveries import deliveries_of_runs
from store.models import Run
from workflows.models import JobStatus


class RunNotFound(OrchestratorError):
    error_type = "RunNotFound"

    def __init__(self, job_id: str, run_id: str) -> None:
        super().__init__(f"Run {run_id} of job {job_id} not found")


class RunHistory:
    """Reads runs, their attempts, checkpoints and notification deliveries."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    async def list_runs(
        self,
        job_id: str,
        status: JobStatus | None,
        page: int,
        page_size: int,
        cursor: str | None = None,
    ) -> RunList:
        """A page of the job's runs; ``cursor`` (a ``next_cursor``) replaces ``page``."""
        after = decode_cursor("runs", cursor) if cursor else None
        async with self._sessions() as session:
            await job_store.get_job(session, job_id)
            runs, total = await run_store.list_runs(session, job_id, status, page, page_size, after)
            views = await self._views(session, list(runs))
        following = None
        if len(runs) == page_size:
            following = encode_cursor("runs", *run_store.run_key(runs[-1]))
        return RunList(
            runs=views, total=total, page=page, page_size=page_size, next_cursor=following
        )

    async def get_run(self, job_id: str, run_id: str) -> RunResponse:
        async with self._sessions() as session:
            await job_store.get_job(session, job_id)
            run = await run_store.find_run(session, run_id)
            if run is None or run.job_id != job_id:
                raise RunNotFound(job_id, run_id)
            return (await self._views(session, [run]))[0]

    async def metrics(self, job_id: str, run_id: str) -> RunMetrics:
        """The run's metric history: every metric name, its points ordered by step."""
        async with self._sessions() as session:
            await job_store.get_job(session, job_id)
            run = await run_store.find_run(session, run_id)
            if run is None or run.job_id != job_id:
                raise RunNotFound(job_id, run_id)
            found, ignored = await metric_history.history_of(session, run_id)
        return RunMetrics(
            job_id=job_id,
            run_id=run_id,
            series=[
                MetricSeries(
                    name=name,
                    steps=[sample.step for sample in samples],
                    values=[sample.value for sample in samples],
                    times=[sample.at for sample in samples],
                )
                for name, samples in sorted(found.items())
            ],
            ignored_values=ignored,
            max_points_per_metric=metric_history.MAX_POINTS_PER_METRIC,
            max_metrics=metric_history.MAX_METRICS_PER_RUN,
        )

    async def _views(self, session: AsyncSession, runs: list[Run]) -> list[RunResponse]:
        """Responses for runs, with their attempts, checkpoints and deliveries in 3 queries."""
        ids = [run.run_id for run in runs]
        if not ids:
            return []
        attempts = {
            run_id: [AttemptView.model_validate(row) for row in rows]
            for run_id, rows in (await run_store.attempts_of_runs(session, ids)).items()
        }
        latest = {
            run_id: CheckpointResponse.model_validate(checkpoint)
            for run_id, checkpoint in (await checkpoints.latest_of_runs(session, ids)).items()
        }
        deliveries = {
            run_id: [Delivery.model_validate(row) for row in rows]
            for run_id, rows in (await deliveries_of_runs(session, ids)).items()
        }
        positions = await queue_positions(
            session, [run.run_id for run in runs if run.status == JobStatus.QUEUED.value]
        )
        return [
            RunResponse(
                run_id=run.run_id,
                job_id=run.job_id,
                trigger=run.trigger,
                scheduled_at=run.scheduled_at,
                started_at=run.started_at,
                completed_at=run.completed_at,
                status=JobStatus(run.status),
                retry_count=run.retry_count,
                attempts=attempts[run.run_id],
                error_message=run.error_message,
                progress=progress_of(run),
                latest_checkpoint=latest.get(run.run_id),
                notifications=deliveries[run.run_id],
                temporal_ui_url=self._settings.run_ui_url(run.run_id),
                triggered_by=run.triggered_by,
                cancelled_by=run.cancelled_by,
                host=run.host,
                gpus=run.gpus,
                queue_reason=run.queue_reason if run.status == JobStatus.QUEUED.value else None,
                queue_position=positions.get(run.run_id),
            )
            for run in runs
        ]
