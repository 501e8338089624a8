"""A job's run history as the API shows it: one record per run, with everything about it."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs import store
from jobs.config import Settings
from jobs.errors import OrchestratorError
from jobs.models import Attempt, Checkpoint, NotificationDelivery, Run
from jobs.run_schemas import Attempt as AttemptView
from jobs.run_schemas import RunList, RunResponse
from jobs.schemas import CheckpointResponse, Delivery
from jobs.status import JobStatus
from jobs.views import progress_of


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
        self, job_id: str, status: JobStatus | None, page: int, page_size: int
    ) -> RunList:
        async with self._sessions() as session:
            await store.get_job(session, job_id)
            query = select(Run).where(Run.job_id == job_id)
            count = select(func.count()).select_from(Run).where(Run.job_id == job_id)
            if status is not None:
                query = query.where(Run.status == status.value)
                count = count.where(Run.status == status.value)
            query = query.order_by(Run.started_at.desc(), Run.run_id.desc())
            page_query = query.offset((page - 1) * page_size).limit(page_size)
            runs = (await session.scalars(page_query)).all()
            total = int(await session.scalar(count) or 0)
            views = await self._views(session, list(runs))
        return RunList(runs=views, total=total, page=page, page_size=page_size)

    async def get_run(self, job_id: str, run_id: str) -> RunResponse:
        async with self._sessions() as session:
            await store.get_job(session, job_id)
            run = await session.get(Run, run_id)
            if run is None or run.job_id != job_id:
                raise RunNotFound(job_id, run_id)
            return (await self._views(session, [run]))[0]

    async def _views(self, session: AsyncSession, runs: list[Run]) -> list[RunResponse]:
        """Responses for runs, with their attempts, checkpoints and deliveries in 3 queries."""
        ids = [run.run_id for run in runs]
        if not ids:
            return []
        attempts: dict[str, list[AttemptView]] = {run_id: [] for run_id in ids}
        for row in await session.scalars(
            select(Attempt).where(Attempt.run_id.in_(ids)).order_by(Attempt.attempt)
        ):
            attempts[row.run_id].append(AttemptView.model_validate(row))
        latest: dict[str, CheckpointResponse] = {}
        ordered = (
            select(Checkpoint)
            .where(Checkpoint.run_id.in_(ids))
            .order_by(
                Checkpoint.step.is_(None), Checkpoint.step.desc(), Checkpoint.created_at.desc()
            )
        )
        for checkpoint in await session.scalars(ordered):
            latest.setdefault(checkpoint.run_id, CheckpointResponse.model_validate(checkpoint))
        deliveries: dict[str, list[Delivery]] = {run_id: [] for run_id in ids}
        for delivery in await session.scalars(
            select(NotificationDelivery)
            .where(NotificationDelivery.run_id.in_(ids))
            .order_by(NotificationDelivery.created_at, NotificationDelivery.id)
        ):
            deliveries[delivery.run_id].append(Delivery.model_validate(delivery))
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
            )
            for run in runs
        ]
