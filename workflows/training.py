"""TrainingJobWorkflow: one run of a training job, from its spec to a final status.

The workflow owns the training attempt loop and the backoff between attempts, so that only
training failures (a non-zero exit, out of memory, a time limit) consume ``max_retries``.
Each attempt is one activity whose own RetryPolicy retries everything else: the retried
activity reattaches to the container the attempt started. That policy has no limit, so a
worker lost any number of times costs nothing; the activity itself counts the failures that
are really the infrastructure's (engine unreachable, image not pulled) and gives up after
INFRA_MAX_ATTEMPTS in a row with a non-retryable error. An engine restart that kills the
container is handled inside the activity too (a new container resumes the checkpoint), so
the workflow's commands do not depend on it.

Where an attempt runs (after pulling its image on some worker, on that worker's own task
queue) and with which retry policy is :mod:`workflows.attempts`.

Versioning: runs last days, so every change to the commands this workflow issues (their
order, their kind or their attributes, such as a retry policy) is guarded with
``workflow.patched("<change-id>")``, the old branch kept until no run from before it can be
in flight; ``tests/replay`` replays recorded histories of every release against this code.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from workflows.admission import CAPACITY_PATCH, CapacityGate, run_admitted_attempt
from workflows.attempts import DIRECT_STARTS_PATCH, run_attempt

# workflow.patched id (release 0.9): no notify_run_status activity for a run whose worker has
# no notification channel configured (Slack, email, webhook): it could send nothing.
SILENT_WITHOUT_CHANNELS_PATCH = "notify-only-with-channels"

with workflow.unsafe.imports_passed_through():
    from workflows.failure_messages import (
        describe_exit,
        describe_infrastructure_failure,
        failure_type,
    )
    from workflows.models import (
        CAPACITY_FREED_SIGNAL,
        HOST_LOST_SIGNAL,
        INVALID_JOB_SPEC,
        JOB_ID_ATTRIBUTE,
        JOB_NAME_ATTRIBUTE,
        JOB_NOT_FOUND,
        NOTIFY_RUN_STATUS,
        RECORD_RUN_STATUS,
        START_RUN,
        TRAINING_FAILED,
        TRIGGER_ATTRIBUTE,
        WORKFLOW_NAME,
        Admission,
        AttemptOutcome,
        JobStatus,
        RunPlan,
        RunStatusUpdate,
        StartRunInput,
        TrainingRunInput,
        TrainingRunResult,
    )

_SCHEDULED_BY = SearchAttributeKey.for_keyword("TemporalScheduledById")
_SCHEDULED_AT = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
_TRIGGER = SearchAttributeKey.for_keyword(TRIGGER_ATTRIBUTE)
# Set by schedules already; upserted so that SDK-started runs are found the same way.
_JOB_ID = SearchAttributeKey.for_keyword(JOB_ID_ATTRIBUTE)
_JOB_NAME = SearchAttributeKey.for_keyword(JOB_NAME_ATTRIBUTE)
# Bookkeeping activities are short; they retry until the database is back.
_STORE_TIMEOUT = timedelta(seconds=30)
_STORE_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))


@workflow.defn(name=WORKFLOW_NAME)
class TrainingJobWorkflow:
    """Runs a job's container until it succeeds, exhausts ``max_retries`` or is cancelled."""

    def __init__(self) -> None:
        self._status = JobStatus.PENDING
        self._attempt = 0
        self._capacity = CapacityGate()
        self._admission = False
        self._announced = False
        # The RUNNING notification, sent while the first attempt starts (direct-starts patch).
        self._running_notice: asyncio.Task[None] | None = None
        self._direct = False

    @workflow.query
    def status(self) -> str:
        return self._status.value

    @workflow.signal(name=CAPACITY_FREED_SIGNAL)
    def capacity_freed(self) -> None:
        """Capacity may have freed: a queued run tries to be admitted again."""
        self._capacity.wake()

    @workflow.signal(name=HOST_LOST_SIGNAL)
    def host_lost(self, epoch: int) -> None:
        """The host of placement ``epoch`` was silent for HOST_LOST_SECONDS: place it again
        (runs under the frozen-host patch; see workflows/attempts.py)."""
        self._capacity.host_lost(epoch)

    @workflow.run
    async def run(self, request: TrainingRunInput) -> TrainingRunResult:
        info = workflow.info()
        # Memoized for the run: a run started before the patch replays the old path.
        direct = workflow.patched(DIRECT_STARTS_PATCH)
        claim: dict[str, object] = (
            {
                "trigger": request.trigger,
                "allow_overlap": request.allow_overlap,
                "actor": request.actor,
            }
            if direct
            else {}
        )
        plan = await workflow.execute_activity(
            START_RUN,
            StartRunInput(
                job_id=request.job_id,
                run_id=info.workflow_id,
                execution_id=info.run_id,
                started_at=workflow.now(),
                started_by_schedule=info.typed_search_attributes.get(_SCHEDULED_BY) is not None,
                scheduled_at=info.typed_search_attributes.get(_SCHEDULED_AT),
                job=request.job,
                **claim,
            ),
            result_type=RunPlan,
            start_to_close_timeout=_STORE_TIMEOUT,
            retry_policy=RetryPolicy(
                maximum_interval=timedelta(seconds=10),
                non_retryable_error_types=[JOB_NOT_FOUND, INVALID_JOB_SPEC],
            ),
        )
        if direct and plan.skipped is not None:
            workflow.logger.info("firing of %s skipped: %s", plan.job_id, plan.skipped)
            return TrainingRunResult(
                job_id=plan.job_id,
                run_id=plan.run_id,
                status=JobStatus.PENDING,
                attempts=0,
                exit_code=None,
                skipped=plan.skipped,
            )
        self._describe(plan, direct)
        self._status = JobStatus.RUNNING
        self._attempt = 1
        self._direct = direct
        self._admission = workflow.patched(CAPACITY_PATCH)
        try:
            if not self._admission:
                # start_run recorded "running" in SQL; people hear of it like every change
                # (with admission, once admitted: a queued run is not running yet).
                await self._announce(plan)
            return await self._attempts(plan)
        except (asyncio.CancelledError, ActivityError) as err:
            if not is_cancelled_exception(err):
                await self._capacity.release(plan)
                raise
            await self._settle_running_notice(cancel=True)
            # The activity has already stopped the container (it waits for that).
            await self._record(plan, JobStatus.CANCELLED, error_message="Cancelled by request")
            await self._capacity.release(plan)
            raise asyncio.CancelledError() from err
        except Exception:
            # Failure gives the lease (or queue place) back too; success did in _attempts. Not
            # a `finally`: an evicted workflow (a BaseException) must issue no command.
            await self._capacity.release(plan)
            raise

    async def _run_attempt(self, plan: RunPlan) -> AttemptOutcome:
        if not self._admission:
            return await run_attempt(plan, self._attempt)

        def queued(admission: Admission) -> None:
            self._status = JobStatus.QUEUED

        async def admitted() -> None:
            self._status = JobStatus.RUNNING
            if not self._announced:
                # Announced once admitted: a queued run is not running yet.
                self._announced = True
                await self._announce(plan)

        return await run_admitted_attempt(plan, self._attempt, self._capacity, queued, admitted)

    async def _announce(self, plan: RunPlan) -> None:
        """The RUNNING notification: under the direct-starts patch sent while the attempt
        starts (the container waits for no mail server), before it otherwise."""
        running = self._update(plan, JobStatus.RUNNING, None, None)
        if self._direct:
            self._running_notice = asyncio.create_task(self._notify(plan, running))
        else:
            await self._notify(plan, running)

    def _describe(self, plan: RunPlan, direct: bool) -> None:
        """Make the run searchable (Trigger='retry', ...) and its memo complete.

        The API's and the schedule's starts set JobId, JobName and the memo already; only what
        is missing is written (SDK starts lack all of it, schedule runs the Trigger).
        """
        info = workflow.info()
        attributes = [
            _JOB_ID.value_set(plan.job_id),
            _JOB_NAME.value_set(plan.name),
            _TRIGGER.value_set(plan.trigger.value),
        ]
        if direct:
            present = info.typed_search_attributes
            attributes = [a for a in attributes if present.get(a.key) != a.value]
        if attributes:
            workflow.upsert_search_attributes(attributes)
        if not direct or "job_name" not in workflow.memo():
            workflow.upsert_memo({"job_name": plan.name, "image": plan.spec.image})

    async def _settle_running_notice(self, *, cancel: bool = False) -> None:
        """Wait for the RUNNING notification (so messages keep their order), or cancel it."""
        notice, self._running_notice = self._running_notice, None
        if notice is None:
            return
        if not cancel:
            await notice
            return
        notice.cancel()
        try:
            await notice
        except (asyncio.CancelledError, ActivityError) as err:
            if not is_cancelled_exception(err):
                raise

    async def _attempts(self, plan: RunPlan) -> TrainingRunResult:
        while True:
            try:
                outcome = await self._run_attempt(plan)
            except ActivityError as err:
                if is_cancelled_exception(err):
                    raise
                message = describe_infrastructure_failure(err)
                await self._record(plan, JobStatus.FAILED, error_message=message)
                raise ApplicationError(message, type=failure_type(err), non_retryable=True) from err

            if outcome.exit_code == 0 or self._attempt > plan.max_retries:
                # The run is over: the next queued run starts while this one is recorded.
                await self._capacity.release(plan)
            if outcome.exit_code == 0:
                await self._record(plan, JobStatus.COMPLETED, exit_code=0)
                return TrainingRunResult(
                    job_id=plan.job_id,
                    run_id=plan.run_id,
                    status=JobStatus.COMPLETED,
                    attempts=self._attempt,
                    exit_code=0,
                )

            message = describe_exit(outcome, self._attempt, plan.max_retries + 1)
            if self._attempt > plan.max_retries:
                await self._record(
                    plan, JobStatus.FAILED, error_message=message, exit_code=outcome.exit_code
                )
                raise ApplicationError(message, type=TRAINING_FAILED, non_retryable=True)

            await self._record(
                plan, JobStatus.RETRYING, error_message=message, exit_code=outcome.exit_code
            )
            await workflow.sleep(_backoff(plan, self._attempt))
            self._attempt += 1
            await self._record(plan, JobStatus.RUNNING)

    async def _record(
        self,
        plan: RunPlan,
        status: JobStatus,
        *,
        error_message: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        self._status = status
        update = self._update(plan, status, error_message, exit_code)
        await workflow.execute_activity(
            RECORD_RUN_STATUS,
            update,
            start_to_close_timeout=_STORE_TIMEOUT,
            retry_policy=_STORE_RETRY,
        )
        await self._settle_running_notice()
        await self._notify(plan, update)

    def _update(
        self,
        plan: RunPlan,
        status: JobStatus,
        error_message: str | None,
        exit_code: int | None,
    ) -> RunStatusUpdate:
        return RunStatusUpdate(
            job_id=plan.job_id,
            run_id=plan.run_id,
            status=status,
            attempt=self._attempt,
            # While retrying, the retry about to run already counts.
            retry_count=self._attempt if status is JobStatus.RETRYING else self._attempt - 1,
            at=workflow.now(),
            error_message=error_message,
            exit_code=exit_code,
        )

    async def _notify(self, plan: RunPlan, update: RunStatusUpdate) -> None:
        """Tell people; an outage of Slack or mail delays the run by a bounded time at most.

        Not even asked when the worker that started the run has no channel configured
        (``plan.notifies``): the activity would only have read the job to send nothing.
        """
        if not plan.notifies and workflow.patched(SILENT_WITHOUT_CHANNELS_PATCH):
            return
        try:
            await workflow.execute_activity(
                NOTIFY_RUN_STATUS,
                update,
                schedule_to_close_timeout=timedelta(seconds=plan.notify_timeout_seconds),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=5)),
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise  # the run is being cancelled: that must not be swallowed with the message
            workflow.logger.warning("notification of %s not delivered: %s", update.status, err)


def _backoff(plan: RunPlan, failed_attempt: int) -> timedelta:
    seconds = plan.retry_backoff_seconds * 2 ** (failed_attempt - 1)
    return timedelta(seconds=min(seconds, plan.retry_backoff_max_seconds))
