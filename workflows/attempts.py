"""Where one training attempt runs: its image is made ready on some worker, then it runs there.

``pull_image`` runs on the shared task queue, so any worker takes it: it makes the image ready
(a pull may take long; it heartbeats with its progress, and its failures are retried a
bounded number of times) and answers with the task queue only that worker polls. The attempt
runs on that queue, so its retries reach the engine that holds its container. If the worker
does not take the attempt within the plan's host-loss timeout (a schedule-to-start timeout,
which Temporal never retries), its host is taken for lost and the attempt is placed again by
a new pull on the shared queue. A frozen worker still holds long polls on its queue, which
take the retried attempt and never answer, so that timeout can fire a minute late; under the
frozen-host patch a placed attempt also stops waiting as soon as a live worker reports its
host lost from the workers table (the ``host_lost`` signal, see supervision/host_loss.py).

Runs started before this existed have no ``pull-image-activity`` marker in their history;
they keep running each attempt as one activity on the shared queue, which pulls for itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, TimeoutError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from workflows.models import (
        INVALID_SPEC,
        PULL_IMAGE,
        RUN_TRAINING_CONTAINER,
        RUNTIME_UNAVAILABLE,
        Admission,
        AttemptOutcome,
        ImageReady,
        PullImageInput,
        RunAttemptInput,
        RunPlan,
    )

# workflow.patched ids, one per change to the commands issued here (release 0.2):
# the pull activity and per-worker task queues;
PULL_IMAGE_PATCH = "pull-image-activity"
# the attempt activity retried without limit, counting infrastructure failures itself.
UNLIMITED_ATTEMPT_RETRIES = "attempt-retries-unlimited-infra-counted-by-activity"
# Release 0.4, in workflows/training.py: start_run is told the API's trigger and whether the
# run may overlap (it claims the job, or skips a schedule firing), a skipped firing ends the
# run at once, the RUNNING notification goes out concurrently with the first attempt, and only
# the search attributes and memo the start did not set are upserted.
DIRECT_STARTS_PATCH = "direct-starts-claimed-running-notice-concurrent"
# Release 0.9: the first attempt of a run that asks for no capacity goes straight to the
# queue of the worker that started it when that worker holds the image already (the plan's
# ``image_ready``), without a pull_image round trip.
READY_AT_START_PATCH = "image-ready-at-start"
# A training container can run for days and a pull for hours: the heartbeat timeout is what
# detects a lost worker, never a limit on the whole.
_ACTIVITY_TIMEOUT = timedelta(days=30)


async def run_attempt(plan: RunPlan, attempt: int) -> AttemptOutcome:
    """Run training attempt ``attempt`` of ``plan`` to its exit code."""
    if not workflow.patched(PULL_IMAGE_PATCH):
        unplaced = await _execute_attempt(plan, attempt, None)
        assert unplaced is not None  # None only when asked to watch for a lost host
        return unplaced
    # Only the run's first try: later ones, and a try placed again, pull where they land.
    ready_at_start = plan.image_ready if attempt == 1 else None
    while True:
        if ready_at_start is not None and workflow.patched(READY_AT_START_PATCH):
            ready: ImageReady | None = ready_at_start
        else:
            ready = await _pull_image(plan, attempt)
        ready_at_start = None
        assert ready is not None
        try:
            outcome = await _execute_attempt(plan, attempt, ready)
            assert outcome is not None
            return outcome
        except ActivityError as err:
            if not _never_started(err):
                raise
            workflow.logger.warning(
                "attempt %d: worker %s did not take it within %s s; placing it again",
                attempt,
                ready.worker,
                plan.host_loss_timeout_seconds,
            )


async def run_placed_attempt(
    plan: RunPlan,
    attempt: int,
    placed: Admission,
    release_on_exit: bool = False,
    host_lost: Callable[[], bool] | None = None,
) -> AttemptOutcome | None:
    """Attempt ``attempt`` on the worker ``placed`` leased, pulled there first, with its GPUs.

    With ``release_on_exit`` the attempt activity gives the lease back once its container
    has exited, if that ends the run (see ``RunAttemptInput``).

    None when that worker did not take the pull or the attempt within the host-loss timeout,
    or (``host_lost``, the frozen-host patch) a worker reported its host lost meanwhile: the
    caller gives the lease back and places the run again.
    """
    try:
        ready = await _pull_image(plan, attempt, placed.task_queue, host_lost)
        if ready is None:
            _reported_lost(attempt, placed)
            return None
        outcome = await _execute_attempt(
            plan, attempt, ready, placed.gpus, placed.epoch, release_on_exit, host_lost
        )
        if outcome is None:
            _reported_lost(attempt, placed)
        return outcome
    except ActivityError as err:
        if not _never_started(err):
            raise
        workflow.logger.warning(
            "attempt %d: worker %s did not take it within %s s; placing it again",
            attempt,
            placed.host,
            plan.host_loss_timeout_seconds,
        )
        return None


def _reported_lost(attempt: int, placed: Admission) -> None:
    workflow.logger.warning(
        "attempt %d: host %s reported lost (epoch %s); placing it again",
        attempt,
        placed.host,
        placed.epoch,
    )


async def _unless_lost(
    handle: workflow.ActivityHandle[Any], host_lost: Callable[[], bool]
) -> Any | None:
    """The activity's result, or None once ``host_lost()``: the activity is then cancelled
    and not waited for (its frozen worker would answer only after its heartbeat timeout; a
    copy it left is fenced by the next epoch). A cancelled run cancels the activity and
    waits for it, as awaiting it directly would."""
    try:
        await workflow.wait_condition(lambda: handle.done() or host_lost())
    except asyncio.CancelledError:
        handle.cancel()
        await handle
        raise
    if handle.done():
        return await handle
    handle.cancel()
    handle.add_done_callback(_settled)
    return None


def _settled(handle: asyncio.Future[Any]) -> None:
    """Retrieve a left activity's outcome, so that it is not reported as never retrieved."""
    if not handle.cancelled():
        handle.exception()


async def _pull_image(
    plan: RunPlan,
    attempt: int,
    task_queue: str | None = None,
    host_lost: Callable[[], bool] | None = None,
) -> ImageReady | None:
    """On any worker (shared queue), or on ``task_queue``, the leased worker's own.

    None if ``host_lost()`` became true first."""
    handle = workflow.start_activity(
        PULL_IMAGE,
        PullImageInput(
            job_id=plan.job_id, run_id=plan.run_id, attempt=attempt, image=plan.spec.image
        ),
        result_type=ImageReady,
        task_queue=task_queue,
        schedule_to_start_timeout=(
            timedelta(seconds=plan.host_loss_timeout_seconds) if task_queue else None
        ),
        start_to_close_timeout=_ACTIVITY_TIMEOUT,
        heartbeat_timeout=timedelta(seconds=plan.heartbeat_timeout_seconds),
        retry_policy=_infrastructure_retry(plan),
    )
    if host_lost is not None:
        ready: ImageReady | None = await _unless_lost(handle, host_lost)
        return ready
    pulled: ImageReady = await handle
    return pulled


async def _execute_attempt(
    plan: RunPlan,
    attempt: int,
    ready: ImageReady | None,
    gpus: list[str] | None = None,
    epoch: int | None = None,
    release_on_exit: bool = False,
    host_lost: Callable[[], bool] | None = None,
) -> AttemptOutcome | None:
    """The attempt on the worker that made its image ready, or (``ready`` None) on any.

    None if ``host_lost()`` became true first."""
    handle = workflow.start_activity(
        RUN_TRAINING_CONTAINER,
        RunAttemptInput(
            job_id=plan.job_id,
            run_id=plan.run_id,
            attempt=attempt,
            spec=plan.spec,
            image_ready=ready is not None,
            gpus=gpus,
            epoch=epoch,
            release_on_exit=release_on_exit,
            last_attempt=release_on_exit and attempt > plan.max_retries,
        ),
        result_type=AttemptOutcome,
        task_queue=ready.task_queue if ready is not None else None,
        start_to_close_timeout=_ACTIVITY_TIMEOUT,
        schedule_to_start_timeout=(
            timedelta(seconds=plan.host_loss_timeout_seconds) if ready is not None else None
        ),
        heartbeat_timeout=timedelta(seconds=plan.heartbeat_timeout_seconds),
        cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        retry_policy=_attempt_retry(plan),
    )
    if host_lost is not None:
        placed: AttemptOutcome | None = await _unless_lost(handle, host_lost)
        return placed
    outcome: AttemptOutcome = await handle
    return outcome


def _attempt_retry(plan: RunPlan) -> RetryPolicy:
    """Worker losses are never counted: the activity bounds its own infrastructure failures.

    Runs from before that change keep the bounded policy they were started with.
    """
    if not workflow.patched(UNLIMITED_ATTEMPT_RETRIES):
        return _infrastructure_retry(plan)
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=0,
        non_retryable_error_types=[INVALID_SPEC],
    )


def _infrastructure_retry(plan: RunPlan) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=plan.infra_max_attempts,
        non_retryable_error_types=[RUNTIME_UNAVAILABLE, INVALID_SPEC],
    )


def _never_started(err: ActivityError) -> bool:
    """The activity waited in its task queue past its schedule-to-start timeout."""
    return isinstance(err.cause, TimeoutError) and err.cause.type == TimeoutType.SCHEDULE_TO_START
