"""Activities that write a run's life to SQL: its start (reading the job's spec) and status."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.errors import JobNotFound, OrchestratorError
from core.settings import Settings
from jobs.creation import JobCreator
from notifications.registry import configured_channels
from store import claims, schedule_events
from store import jobs as job_store
from store import runs as run_store
from store.models import Job
from workflows.models import (
    CLAIM_HELD,
    INVALID_JOB_SPEC,
    JOB_NOT_FOUND,
    JOB_RUNNING,
    RECORD_RUN_STATUS,
    START_RUN,
    ImageReady,
    RunPlan,
    RunStatusUpdate,
    StartRunInput,
    TrainingSpec,
    Trigger,
)

# Overlap policies under which a firing that finds another run active (a manual one, say,
# which the schedule does not see) waits for it, as Temporal buffers behind its own runs.
# skip, cancel_other and terminate_other skip it (a run someone started is never cancelled by
# a firing); allow_all runs it alongside, without the claim.
WAITING_POLICIES = ("buffer_one", "buffer_all")


class RunStoreActivities:
    """Holds the worker's session factory; one instance is registered by worker.py."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        creator: JobCreator | None = None,
        ready_here: Callable[[str], Awaitable[ImageReady | None]] | None = None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._creator = creator
        # Where the image can be used at once (ImageActivities.ready_here), if anywhere.
        self._ready_here = ready_here
        # Channels are worker settings, configured alike on every worker (docs/configuration.md).
        self._notifies = bool(configured_channels(settings))

    @activity.defn(name=START_RUN)
    async def start_run(self, request: StartRunInput) -> RunPlan:
        """Record the run as started and return the job's current spec.

        For a run that needs no capacity, the plan also says whether this worker can start
        its first attempt at once (the image is here): ``image_ready``.

        An SDK start for an unknown job that carries a job spec registers the job first.
        """
        if request.job is not None and self._creator is not None:
            async with self._sessions() as session:
                known = await job_store.find_job(session, request.job_id) is not None
            if not known:
                try:
                    await self._creator.register(request.job_id, request.job)
                except OrchestratorError as err:
                    raise ApplicationError(
                        err.detail, type=INVALID_JOB_SPEC, non_retryable=True
                    ) from err
        async with self._sessions() as session:
            try:
                skipped = await self._claim(session, request)
                job = await job_store.get_job(session, request.job_id)
                if skipped is not None:
                    return self._plan(job, request.run_id, Trigger.SCHEDULE, skipped)
                job, run = await run_store.start_run(
                    session,
                    request.job_id,
                    request.run_id,
                    request.execution_id,
                    request.started_at,
                    default_trigger=Trigger.SCHEDULE
                    if request.started_by_schedule
                    else Trigger.SDK,
                    scheduled_at=request.scheduled_at,
                    trigger=request.trigger,
                    actor=request.actor,
                )
            except JobNotFound as err:
                detail = (
                    f"{err.detail}: create it through the API first, or start the workflow "
                    "with TrainingRunInput(job_id=..., job={...the body of POST /jobs...})"
                )
                raise ApplicationError(detail, type=JOB_NOT_FOUND, non_retryable=True) from err
        plan = self._plan(job, run.run_id, Trigger(run.trigger))
        if self._ready_here is not None and not plan.spec.needs_capacity():
            # On this worker, where the image is, unless admission is to place the run.
            plan.image_ready = await self._ready_here(plan.spec.image)
        return plan

    async def _claim(self, session: AsyncSession, request: StartRunInput) -> str | None:
        """Claim the job for this run; None when it may go on, else why the firing is skipped.

        Raises:
            ApplicationError: ``JobRunning`` (non-retryable) for an SDK start that lost the
                claim; ``ClaimHeld`` (retried until the claim is free) for a firing that waits.
        """
        if request.allow_overlap:
            return None
        job = await job_store.get_job(session, request.job_id)
        if job.active_run_id == request.run_id:
            return None  # claimed by the API that started it: nothing to write
        if await claims.claim(session, job.job_id, request.run_id):
            return None
        await session.refresh(job)
        holder = job.active_run_id or job.latest_run_id
        if not request.started_by_schedule:
            raise ApplicationError(
                f"job {job.job_id} has an active run ({holder}, {job.status}); "
                "wait for it to end, or trigger with allow_overlap through the API",
                type=JOB_RUNNING,
                non_retryable=True,
            )
        trigger = await run_store.trigger_of(
            session, job, Trigger.SCHEDULE, request.scheduled_at, request.started_at
        )
        policy = job.overlap_policy or "skip"
        if trigger == Trigger.BACKFILL or policy in WAITING_POLICIES:
            raise ApplicationError(f"waiting for run {holder} of {job.job_id}", type=CLAIM_HELD)
        if policy == "allow_all":
            return None
        at = request.scheduled_at.isoformat() if request.scheduled_at else "now"
        reason = (
            f"firing {request.run_id} ({at}) skipped: run {holder} is active "
            f"(overlap policy {policy})"
        )
        await schedule_events.record_skipped_firing(session, job.job_id, reason)
        return reason

    def _plan(self, job: Job, run_id: str, trigger: Trigger, skipped: str | None = None) -> RunPlan:
        settings = self._settings
        return RunPlan(
            job_id=job.job_id,
            run_id=run_id,
            name=job.name,
            # The row's columns carry the spec's names: one copy, validated by the contract.
            spec=TrainingSpec.model_validate(job, from_attributes=True),
            max_retries=job.max_retries,
            trigger=trigger,
            retry_backoff_seconds=settings.retry_backoff_seconds,
            retry_backoff_max_seconds=settings.retry_backoff_max_seconds,
            heartbeat_timeout_seconds=settings.heartbeat_timeout_seconds,
            infra_max_attempts=settings.infra_max_attempts,
            notify_timeout_seconds=settings.notify_timeout_seconds,
            host_loss_timeout_seconds=settings.host_lost_seconds,
            queue_poll_seconds=settings.queue_poll_seconds,
            skipped=skipped,
            notifies=self._notifies,
        )

    @activity.defn(name=RECORD_RUN_STATUS)
    async def record_run_status(self, update: RunStatusUpdate) -> None:
        """Apply one status transition of a run to the run and (if latest) its job."""
        async with self._sessions() as session:
            applied = await run_store.record_run_status(
                session,
                job_id=update.job_id,
                run_id=update.run_id,
                status=update.status,
                attempt=update.attempt,
                retry_count=update.retry_count,
                at=update.at,
                error_message=update.error_message,
                exit_code=update.exit_code,
            )
        if not applied:
            activity.logger.warning(
                "run %s of job %s is gone (job deleted?); status %s not recorded",
                update.run_id,
                update.job_id,
                update.status,
            )
