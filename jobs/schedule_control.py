"""Steering a job's schedule: pause, resume, trigger, backfill, and the SQL mirror of its state.

Temporal owns the schedule. SQL keeps a mirror of ``paused`` and ``next_run_at`` so lists
and stats need no Temporal call; a single-job read refreshes it from Temporal, and the API's
reconciler (its leader, jobs/control_plane.py) refreshes what can have changed every
RECONCILE_INTERVAL_SECONDS and sweeps the rest a page a tick (jobs/schedule_mirror.py),
which is how a pause made in the Temporal UI or with ``temporal schedule toggle`` reaches
the API.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import ScheduleActionExecutionStartWorkflow, ScheduleDescription
from temporalio.service import RPCError, RPCStatusCode

from core.errors import InvalidInput, JobNotFound, ServiceUnavailable
from core.settings import Settings
from jobs.requests import BackfillRequest
from jobs.responses import BackfillResponse, FiringTime, ScheduleEventResponse, ScheduleView
from jobs.run_starts import RunStarts
from jobs.schedule_mirror import ScheduleMirror
from jobs.temporal import JobSchedules
from store import audit, journal, schedule_events
from store import jobs as job_store
from store.models import Job
from workflows.models import Trigger

logger = logging.getLogger(__name__)

NEXT_RUN_TIMES = 5


def firing(moment: datetime, timezone: str) -> FiringTime:
    return FiringTime(local=moment.astimezone(ZoneInfo(timezone)), utc=moment.astimezone(UTC))


class SchedulingService:
    """Schedule controls of the REST API."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        schedules: JobSchedules,
        settings: Settings,
    ) -> None:
        self._sessions = sessions
        self._schedules = schedules
        self._settings = settings
        self._starts = RunStarts(sessions, schedules)
        self.mirror = ScheduleMirror(sessions, schedules)

    async def describe(self, job: Job) -> ScheduleDescription | None:
        """Like :meth:`refresh`, but None while Temporal cannot answer."""
        try:
            return await self.refresh(job)
        except (RPCError, ServiceUnavailable) as err:
            logger.warning("schedule of %s not described: %s", job.job_id, err)
            return None

    async def refresh(self, job: Job) -> ScheduleDescription:
        """Temporal's view of the job's schedule, refreshing the SQL mirror on the way.

        Raises:
            ServiceUnavailable: The schedule is missing (deleted behind our back, or a
                Temporal that lost its data); it is journalled, so the reconciler recreates it.
        """
        try:
            description = await self._schedules.describe(job.job_id)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            async with self._sessions() as session:
                if await job_store.find_job(session, job.job_id) is None:
                    raise JobNotFound(job.job_id) from err  # deleted while it was read
                await journal.journal_schedule_change(session, job.job_id)
            raise ServiceUnavailable(
                f"the Temporal schedule of job {job.job_id} is missing; it is being recreated"
            ) from err
        upcoming = description.info.next_action_times
        await self._mirror(
            job.job_id,
            description.schedule.state.paused,
            description.schedule.state.note,
            upcoming[0] if upcoming else None,
            actor="ui/cli",
        )
        job.paused = description.schedule.state.paused
        job.next_run_at = upcoming[0] if upcoming and not job.paused else None
        return description

    async def next_run_times(self, job: Job) -> list[FiringTime] | None:
        description = await self.describe(job)
        if description is None:
            return None
        if description.schedule.state.paused:
            return []  # Temporal still lists them, but a paused schedule will not fire
        times = description.info.next_action_times[:NEXT_RUN_TIMES]
        return [firing(moment, job.timezone) for moment in times]

    async def view(self, job_id: str) -> ScheduleView:
        async with self._sessions() as session:
            job = await job_store.get_job(session, job_id)
        description = await self.refresh(job)
        info, state = description.info, description.schedule.state
        async with self._sessions() as session:
            events = await schedule_events.recent_events(session, job_id)
            history = [ScheduleEventResponse.model_validate(e) for e in events]
            skipped = await schedule_events.count_skipped_firings(session, job_id)
        return ScheduleView(
            job_id=job_id,
            schedule=job.schedule,
            timezone=job.timezone,
            paused=state.paused,
            note=state.note,
            next_run_times=[]
            if state.paused
            else [firing(t, job.timezone) for t in info.next_action_times[:NEXT_RUN_TIMES]],
            skipped_overlap=info.num_actions_skipped_overlap,
            skipped_active_run=skipped,
            missed_catchup_window=info.num_actions_missed_catchup_window,
            running_runs=[
                action.workflow_id
                for action in info.running_actions
                if isinstance(action, ScheduleActionExecutionStartWorkflow)
            ],
            events=history,
        )

    async def set_paused(self, job_id: str, paused: bool, note: str | None, actor: str) -> None:
        async with self._sessions() as session:
            await job_store.get_job(session, job_id)
            audit.record_change(session, actor, "pause" if paused else "resume", job_id, note)
            await session.commit()
        text = note or ("Paused through the API" if paused else "Resumed through the API")
        if paused:
            await self._schedules.pause(job_id, text)
        else:
            await self._schedules.unpause(job_id, text)
        await self._mirror(job_id, paused, text, None, actor=actor)
        async with self._sessions() as session:
            await self.describe(await job_store.get_job(session, job_id))

    async def trigger(self, job_id: str, allow_overlap: bool, actor: str) -> None:
        """Start a run now, whatever the overlap policy; 409 while one is active, unless
        ``allow_overlap`` (the run then holds no claim)."""
        await self._starts.start(
            job_id,
            Trigger.MANUAL,
            allow_overlap=allow_overlap,
            action="trigger (send allow_overlap: true)",
            actor=actor,
            audit_action="trigger",
        )

    async def backfill(self, job_id: str, request: BackfillRequest, actor: str) -> BackfillResponse:
        async with self._sessions() as session:
            job = await job_store.get_job(session, job_id)
        if not job.schedule:
            raise InvalidInput(f"job {job_id} has no schedule to backfill")
        longest = timedelta(days=self._settings.backfill_max_range_days)
        if request.end - request.start > longest:
            raise InvalidInput(
                f"the range is longer than {longest.days} days (BACKFILL_MAX_RANGE_DAYS); "
                "backfill a shorter range"
            )
        limit = self._settings.backfill_max_firings
        times = await self._schedules.matching_times(job_id, request.start, request.end, limit)
        if len(times) > limit:
            raise InvalidInput(
                f"the range holds more than {limit} firings (BACKFILL_MAX_FIRINGS); "
                "backfill a shorter range"
            )
        if not request.dry_run and times:
            async with self._sessions() as session:
                span = f"{request.start.isoformat()} to {request.end.isoformat()}"
                audit.record_change(session, actor, "backfill", job_id, span)
                await schedule_events.record_backfill(
                    session, job_id, request.start, request.end, actor
                )
            await self._schedules.backfill(
                job_id, request.start, request.end, request.overlap_policy
            )
        return BackfillResponse(
            job_id=job_id,
            dry_run=request.dry_run,
            count=len(times),
            times=[firing(t, job.timezone) for t in times],
        )

    async def sync_mirror(self) -> int:
        """Bring the jobs' ``paused`` and ``next_run_at`` in line with Temporal, one tick's part.

        What can have changed, and a page of the rest (jobs/schedule_mirror.py): calls grow
        with pages, not jobs. Returns how many rows changed.
        """
        return await self.mirror.sync()

    async def _mirror(
        self,
        job_id: str,
        paused: bool,
        note: str | None,
        upcoming: datetime | None,
        *,
        actor: str,
    ) -> int:
        """Store the schedule's state; a change of ``paused`` is recorded as an event."""
        async with self._sessions() as session:
            changed = await schedule_events.mirror_state(
                session, job_id, paused, note, upcoming, actor=actor
            )
        return int(changed)
