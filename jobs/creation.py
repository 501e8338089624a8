"""The one way a job comes into being: from ``POST /jobs`` or from an SDK start.

Both paths validate the same spec (notification routing included), commit the schedule's
journal entry with the row, and undo the row if the schedule cannot be created; if the process
dies in between, the reconciler replays the journal entry. A one-off job from the API is
created claimed by its first run (``store.claims``), whose workflow is started directly, at the
same time as the schedule (which has no spec: it is there so the Temporal UI shows every job).

Python users may start ``TrainingJobWorkflow`` with the Temporal SDK for a job id the
orchestrator does not know, passing the body of ``POST /jobs`` in the input: the job is then
registered as a one-off job under the caller's id, and the caller's own run is its first.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import CheckpointPathConflict, DuplicateJobName, InvalidInput
from core.secret_env import check_secret_env
from core.settings import Settings
from jobs.definition_sync import holding_entry
from jobs.notification_rules import validate_job_notifications
from jobs.requests import JobCreate
from jobs.run_starts import new_run_id
from jobs.spec_size import check_spec_size
from jobs.temporal import JobSchedules
from store import audit, journal
from store import jobs as job_store
from store.models import Job, utcnow
from workflows.models import Trigger

JOB_ID_FORMAT = re.compile(r"train-[0-9a-f]{8}")
# The actor of jobs registered by a Temporal SDK start (no API key is involved).
SDK_ACTOR = "temporal-sdk"


async def refuse_nested_checkpoint_path(
    session: AsyncSession, path: str, job_id: str | None
) -> None:
    """Raises CheckpointPathConflict if ``path`` is inside another job's or contains one."""
    other = await job_store.checkpoint_path_nested(session, path, except_job=job_id)
    if other is not None:
        raise CheckpointPathConflict(
            f"checkpoint_path: {path} and another job's {other} are nested; a job's "
            "directory may be shared but never lie inside another's"
        )


class JobCreator:
    """Creates jobs: the SQL row and its Temporal Schedule, kept in step by the journal."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        schedules: JobSchedules,
        settings: Settings,
    ) -> None:
        self._sessions = sessions
        self._schedules = schedules
        self._settings = settings

    async def create(self, body: JobCreate, actor: str) -> Job:
        """A job with a fresh id; one without a schedule runs once, now."""
        return await self._create(body, job_id=None, actor=actor)

    async def register(self, job_id: str, spec: dict[str, Any]) -> Job:
        """The job of an SDK start for an unknown ``job_id``, from the spec in its input.

        Raises:
            InvalidInput: The id is malformed or was used before, or the spec is invalid.
            DuplicateJobName: Another job has the name.
        """
        if not JOB_ID_FORMAT.fullmatch(job_id):
            raise InvalidInput(f"job_id {job_id!r} must look like train-1a2b3c4d (8 hex digits)")
        try:
            body = JobCreate.model_validate({**spec, "schedule": None})
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
            )
            raise InvalidInput(
                f"the job spec in the workflow input is invalid: {problems}"
            ) from None
        return await self._create(body, job_id=job_id, actor=SDK_ACTOR)

    async def _create(self, body: JobCreate, *, job_id: str | None, actor: str) -> Job:
        validate_job_notifications(self._settings, body.notifications)
        check_secret_env(self._settings, body.secret_env)
        # Before anything is written: an SDK start must not use up its job id on this.
        check_spec_size(self._settings, body.command, body.env, body.secret_env)
        # An SDK-started job's first run is the caller's own; an API one-off runs at once.
        run_now = job_id is None and body.schedule is None
        async with self._sessions() as session:
            if await job_store.name_taken(session, body.name):
                raise DuplicateJobName(body.name)
            if body.checkpoint_path:
                await refuse_nested_checkpoint_path(session, body.checkpoint_path, None)
            if job_id is None:
                job_id = await job_store.issue_job_id(session)
            elif not await job_store.claim_job_id(session, job_id):
                raise InvalidInput(f"job id {job_id} was used before; job ids are never reused")
            if not body.checkpoint_path:
                # The default directory too: another job's may have been put inside it.
                await refuse_nested_checkpoint_path(
                    session, job_store.default_checkpoint_path(job_id), None
                )
            # A one-off job is created claimed by its first run, so nothing else starts first.
            run_id = new_run_id(job_id, Trigger.MANUAL) if run_now else None
            job = job_store.new_job(
                job_id,
                body.model_dump(),
                active_run_id=run_id,
                claimed_at=utcnow() if run_id else None,
                created_by=actor,
                updated_by=actor,
            )
            # From the journal entry to its clearing within the deadline the replay's grace
            # counts on (jobs/definition_sync.py).
            async with holding_entry(timedelta(seconds=self._settings.rpc_timeout_seconds)):
                # The journal entry and the row in one transaction: both or neither.
                journal.stage_schedule_change(session, job_id)
                audit.record_change(session, actor, "create", job_id)
                session.add(job)
                try:
                    # Committed before the schedule exists: a one-off job's run starts at
                    # once and must find its row.
                    await session.commit()
                except IntegrityError:
                    await session.rollback()
                    raise DuplicateJobName(body.name) from None
                try:
                    await self._create_in_temporal(job, run_id, actor)
                except BaseException:
                    await job_store.delete_job_rows(session, job_id)
                    await session.commit()
                    raise
                await journal.clear_schedule_change(session, job_id)
            return job

    async def _create_in_temporal(self, job: Job, run_id: str | None, actor: str) -> None:
        """The job's schedule and, for a one-off job, its run: both at once, or neither."""
        if run_id is None:
            await self._schedules.create(job)
            return
        created, started = await asyncio.gather(
            self._schedules.create(job),
            self._schedules.start_run(
                job, run_id, Trigger.MANUAL, allow_overlap=False, actor=actor
            ),
            return_exceptions=True,
        )
        failure = next((r for r in (created, started) if isinstance(r, BaseException)), None)
        if failure is None:
            return
        # Undo the half that happened; the row is deleted by the caller.
        if not isinstance(started, BaseException):
            await self._schedules.terminate_run(run_id, "its job could not be created")
        if not isinstance(created, BaseException):
            await self._schedules.delete(job.job_id)
        raise failure
