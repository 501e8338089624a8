"""Runs the API starts itself: manual triggers, retries and one-off jobs' runs.

Each is one ``start_workflow`` with a workflow id of its own,
``<job_id>-<trigger>-<UTC time to the microsecond>-<random>``, so ids sort by start and two
starts never share one. Unless the caller allows overlap, the job is claimed for the run
first (``store.claims``): a second start while a run is active is refused with 409, on any
replica. If the start fails, the claim is released again.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import WorkflowAlreadyStartedError

from core.errors import JobRunning
from jobs.temporal import JobSchedules
from store import audit, claims
from store import jobs as job_store
from store.models import Job
from workflows.models import JobStatus, Trigger


def new_run_id(job_id: str, trigger: Trigger) -> str:
    """A workflow id that sorts by start time and is never drawn twice."""
    moment = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{job_id}-{trigger.value}-{moment}-{secrets.token_hex(3)}"


def refuse(job: Job, action: str) -> JobRunning:
    """The 409 for a job with an active run (a claimed run not started yet is ``pending``)."""
    status = job.status if JobStatus(job.status).is_active else JobStatus.PENDING.value
    return JobRunning(job.job_id, status, action)


class RunStarts:
    """Claims a job for a run and starts the run's workflow."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], schedules: JobSchedules):
        self._sessions = sessions
        self._schedules = schedules

    async def start(
        self,
        job_id: str,
        trigger: Trigger,
        *,
        allow_overlap: bool = False,
        action: str,
        actor: str,
        audit_action: str,
        **changes: Any,
    ) -> Job:
        """Claim (unless ``allow_overlap``) and start a run; the job as the claim left it.

        ``changes`` are written with the claim, and undone if the start fails; ``actor``
        becomes the run's ``triggered_by`` and the audit event's actor (``audit_action``).

        Raises:
            JobRunning: Another run is active (409).
        """
        run_id = new_run_id(job_id, trigger)
        async with self._sessions() as session:
            job = await job_store.get_job(session, job_id)
            previous = {key: getattr(job, key) for key in changes}
            if not allow_overlap:
                won = await claims.claim(session, job_id, run_id, **changes)
                await session.refresh(job)
                if not won:
                    raise refuse(job, action)
            audit.record_change(session, actor, audit_action, job_id)
            await session.commit()
        # The session is closed first: a request never holds a connection across an RPC.
        try:
            await self._schedules.start_run(
                job, run_id, trigger, allow_overlap=allow_overlap, actor=actor
            )
        except BaseException:
            if not allow_overlap:
                async with self._sessions() as session:
                    await claims.release(session, job_id, run_id, **previous)
                    await session.commit()
            raise
        return job

    async def start_claimed(self, job: Job) -> None:
        """Start the run a job was created with (its claim), or a new manual run if none.

        For the journal's replay of a one-off job whose creation died before its run started;
        a run already started under the claimed id is left alone.
        """
        if job.active_run_id is None:
            await self.start(
                job.job_id,
                Trigger.MANUAL,
                action="start",
                actor=job.created_by or "anonymous",
                audit_action="trigger",
            )
            return
        try:
            await self._schedules.start_run(
                job, job.active_run_id, Trigger.MANUAL, allow_overlap=False, actor=job.created_by
            )
        except WorkflowAlreadyStartedError:
            pass
