"""What the API does to a job, with SQL and the Temporal Schedule kept in step.

Each change that touches both is journalled first (``schedule_syncs``), then written to SQL
and Temporal in an order that can be undone; if the process dies half-way, the reconciler
replays the journal entry and makes the schedule match whatever SQL holds. How PUT, DELETE
and the replay keep replicas from overwriting each other: ``jobs/definition_sync.py``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import DuplicateJobName
from core.secret_env import check_secret_env
from core.settings import Settings
from jobs import views
from jobs.creation import refuse_nested_checkpoint_path
from jobs.definition_sync import DefinitionSync, check_if_match
from jobs.notification_rules import validate_job_notifications
from jobs.paging import decode_cursor, encode_cursor
from jobs.requests import JobUpdate
from jobs.responses import FiringTime, JobResponse, Stats
from jobs.run_starts import RunStarts, refuse
from jobs.schedule_control import SchedulingService
from jobs.spec_size import check_spec_size
from jobs.temporal import JobSchedules
from store import claims
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
        self._definitions = DefinitionSync(
            sessions,
            schedules,
            timedelta(seconds=settings.rpc_timeout_seconds),
            self._starts,
        )

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
        self,
        status: JobStatus | None,
        page: int,
        page_size: int,
        name: str | None = None,
        cursor: str | None = None,
    ) -> tuple[list[JobResponse], int, str | None]:
        """A page of jobs, the total, and the cursor of the next page (None if none).

        ``cursor`` (a ``next_cursor`` handed out before) replaces ``page``.
        """
        after = decode_cursor("jobs", cursor) if cursor else None
        async with self._sessions() as session:
            rows, total = await job_store.list_jobs(session, status, page, page_size, name, after)
            following = None
            if len(rows) == page_size:
                following = encode_cursor("jobs", *job_store.job_key(rows[-1]))
            return await views.job_views(session, rows), total, following

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

    async def read(self, job_id: str) -> Job:
        """The job's row (404 if there is none), for a single-job response and its ETag."""
        async with self._sessions() as session:
            return await job_store.get_job(session, job_id)

    async def update(
        self, job_id: str, body: JobUpdate, actor: str, if_match: str | None = None
    ) -> Job:
        """PUT: the fields sent, onto the latest definition; the schedule's changed parts.

        Raises:
            PreconditionFailed: ``if_match`` is sent and names another version.
        """
        changes: dict[str, Any] = body.changes()
        if "notifications" in changes:
            validate_job_notifications(self._settings, body.notifications)
        check_secret_env(self._settings, body.secret_env)

        async def recheck(session: AsyncSession, job: Job) -> None:
            _refuse_if_active(job, "update")
            if "name" in changes and await job_store.name_taken(
                session, changes["name"], except_job=job_id
            ):
                raise DuplicateJobName(changes["name"])

        async with self._sessions() as session:
            # Checked before anything is journalled, and again under the row's lock.
            job = await job_store.get_job(session, job_id)
            check_if_match(job, if_match)
            await recheck(session, job)
            if not changes:
                return job
            if changes.get("checkpoint_path"):
                await refuse_nested_checkpoint_path(session, changes["checkpoint_path"], job_id)
            if {"command", "env", "secret_env"} & changes.keys():
                check_spec_size(
                    self._settings,
                    changes.get("command", job.command),
                    changes.get("env", job.env),
                    changes.get("secret_env", job.secret_env),
                )
            return await self._definitions.update(
                session, job_id, changes, if_match, recheck, actor
            )

    async def delete(self, job_id: str, actor: str, if_match: str | None = None) -> None:
        async def recheck(_: AsyncSession, job: Job) -> None:
            if job.status != JobStatus.QUEUED.value:
                _refuse_if_active(job, "delete")

        async with self._sessions() as session:
            job = await job_store.get_job(session, job_id)
            check_if_match(job, if_match)
            await recheck(session, job)
            if job.status == JobStatus.QUEUED.value and job.latest_run_id is not None:
                # A queued run holds nothing yet: deleting its job cancels it (its workflow
                # gives its queue place back; its status write finds the job gone).
                await self._schedules.cancel_run(job.latest_run_id)
            await self._definitions.delete(session, job_id, if_match, recheck, actor)

    async def retry(self, job_id: str, actor: str) -> Job:
        """Reset the job to ``pending`` and start a run with trigger ``retry``; 409 if active."""
        return await self._starts.start(
            job_id,
            Trigger.RETRY,
            action="retry",
            actor=actor,
            audit_action="retry",
            status=JobStatus.PENDING.value,
            retry_count=0,
            error_message=None,
            started_at=None,
            completed_at=None,
            updated_at=utcnow(),
        )

    async def reconcile(self, older_than: timedelta) -> int:
        """Replay journal entries older than ``older_than``; returns how many were repaired."""
        return await self._definitions.replay(older_than)


def _refuse_if_active(job: Job, action: str) -> None:
    if claims.has_active_run(job):
        raise refuse(job, action)
