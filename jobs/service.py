"""What the API does to a job, with SQL and the Temporal Schedule kept in step.

Each change that touches both is journalled first (``schedule_syncs``), then written to SQL
and Temporal in an order that can be undone; if the process dies half-way, the reconciler
replays the journal entry and makes the schedule match whatever SQL holds.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import DuplicateJobName
from core.settings import Settings
from jobs import views
from jobs.notification_rules import validate_job_notifications
from jobs.requests import JobUpdate
from jobs.responses import FiringTime, JobResponse, Stats
from jobs.run_starts import RunStarts, refuse
from jobs.schedule_control import SchedulingService
from jobs.spec_size import check_spec_size
from jobs.temporal import JobSchedules
from store import claims, journal, schedule_events
from store import jobs as job_store
from store.models import Job, utcnow
from workflows.models import JobStatus, Trigger

logger = logging.getLogger(__name__)


class JobService:
    """The job operations of the REST API."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        schedules: JobSchedules,
        settings: Settings,
        scheduling: SchedulingService,
    ):
        self._sessions = sessions
        self._schedules = schedules
        self._settings = settings
        self._scheduling = scheduling
        self._starts = RunStarts(sessions, schedules)

    async def get(self, job_id: str) -> JobResponse:
        async with self._sessions() as session:
            job = await job_store.get_job(session, job_id)
        # The session is closed first: a request never holds two pooled connections.
        return await self.view(job)

    async def view(self, job: Job, *, created: bool = False) -> JobResponse:
        """A single-job response: read from Temporal too (next run times, pause state).

        A one-off job ``created`` just now has no firings to ask Temporal about: its schedule
        was written from this row a moment ago, with no spec.
        """
        if created and not job.schedule:
            next_times: list[FiringTime] | None = []
        else:
            next_times = await self._scheduling.next_run_times(job)
        async with self._sessions() as session:
            response = await views.job_view(session, job)
            response.latest_run_notifications = await views.deliveries(session, job.latest_run_id)
        response.next_run_times = next_times
        return response

    async def list(
        self, status: JobStatus | None, page: int, page_size: int, name: str | None = None
    ) -> tuple[list[JobResponse], int]:
        async with self._sessions() as session:
            rows, total = await job_store.list_jobs(session, status, page, page_size, name)
            return await views.job_views(session, rows), total

    async def stats(self) -> Stats:
        async with self._sessions() as session:
            counts = await job_store.count_by_status(session)
            paused, scheduled = await job_store.count_schedule_states(session)
        return Stats(
            total_jobs=sum(counts.values()),
            **{status.value: number for status, number in counts.items()},
            paused=paused,
            scheduled=scheduled,
        )

    async def update(self, job_id: str, body: JobUpdate) -> Job:
        changes: dict[str, Any] = body.changes()
        if "notifications" in changes:
            validate_job_notifications(self._settings, body.notifications)
        async with self._sessions() as session:
            job = await job_store.get_job(session, job_id)
            _refuse_if_active(job, "update")
            if "name" in changes and await job_store.name_taken(
                session, changes["name"], except_job=job_id
            ):
                raise DuplicateJobName(changes["name"])
            if not changes:
                return job
            if {"command", "env", "secret_env"} & changes.keys():
                check_spec_size(
                    self._settings,
                    changes.get("command", job.command),
                    changes.get("env", job.env),
                    changes.get("secret_env", job.secret_env),
                )
            await journal.journal_schedule_change(session, job_id)
            job = await job_store.get_job(session, job_id)
            if "paused" in changes and changes["paused"] != job.paused:
                schedule_events.add_pause_event(
                    session, job_id, changes["paused"], "Changed with PUT /jobs/{job_id}", "api"
                )
            for key, value in changes.items():
                setattr(job, key, value)
            job.updated_at = utcnow()
            try:
                await session.flush()
            except IntegrityError:
                await session.rollback()
                await journal.clear_schedule_change(session, job_id)
                raise DuplicateJobName(changes.get("name", job.name)) from None
            # The transaction stays open while Temporal is told, so a failure there rolls
            # the row back; a crash in between is repaired from the journal.
            await self._schedules.update(job)
            await session.commit()
            await journal.clear_schedule_change(session, job_id)
            return job

    async def delete(self, job_id: str) -> None:
        async with self._sessions() as session:
            job = await job_store.get_job(session, job_id)
            _refuse_if_active(job, "delete")
            await journal.journal_schedule_change(session, job_id)
            await job_store.delete_job_rows(session, job_id)
            await session.flush()
            await self._schedules.delete(job_id)
            await session.commit()
            await journal.clear_schedule_change(session, job_id)

    async def retry(self, job_id: str) -> Job:
        """Reset the job to ``pending`` and start a run with trigger ``retry``; 409 if active."""
        return await self._starts.start(
            job_id,
            Trigger.RETRY,
            action="retry",
            status=JobStatus.PENDING.value,
            retry_count=0,
            error_message=None,
            started_at=None,
            completed_at=None,
            updated_at=utcnow(),
        )

    async def reconcile(self, older_than: timedelta) -> int:
        """Replay journal entries older than ``older_than``; returns how many were repaired."""
        repaired = 0
        async with self._sessions() as session:
            job_ids = await journal.pending_schedule_changes(session, older_than)
        for job_id in job_ids:
            async with self._sessions() as session:
                job = await job_store.find_job(session, job_id)
                if job is None:
                    await self._schedules.delete(job_id)
                else:
                    never_ran = job.latest_run_id is None and job.schedule is None
                    if await self._schedules.exists(job_id):
                        await self._schedules.update(job)
                        # Its creation died between the schedule and its claimed run's start.
                        never_ran = never_ran and job.active_run_id is not None
                    else:
                        await self._schedules.create(job)
                    if never_ran:
                        await self._starts.start_claimed(job)
                await journal.clear_schedule_change(session, job_id)
                logger.info("reconciled schedule of %s with SQL", job_id)
                repaired += 1
        return repaired


def _refuse_if_active(job: Job, action: str) -> None:
    if claims.has_active_run(job):
        raise refuse(job, action)
