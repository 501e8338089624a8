"""Admission: a run waits, ``queued``, until some worker can hold what it asks for.

Before each attempt the workflow asks ``acquire_capacity`` (shared queue; the leases are SQL
rows, see ``store/capacity.py``) for a lease of the run's GPUs (by id), CPUs and memory on
one worker. Without one, the activity has recorded the run as ``queued`` with its reason and
the workflow waits for the ``capacity_freed`` signal, which the release of a lease sends to
the runs next in line; a slow timer (``queue_poll_seconds``) is only the safety net. With
one, the image is pulled and the attempt runs on that worker's own task queue, with its GPU
ids. The lease is kept across the attempts of a run and given back when the run ends, on
every path (``TrainingJobWorkflow`` releases in a ``finally``); a worker that stops renewing
its registration takes no new runs, and its runs move once it is lost. Waiting costs no
retry: it is not an attempt.

A run whose job asks for no resources is admitted at once, with no command at all, and runs
as before (pulled on any worker). Runs started before this existed carry no
``capacity-admission`` marker and keep the old path.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.attempts import run_attempt, run_placed_attempt

with workflow.unsafe.imports_passed_through():
    from workflows.models import (
        ACQUIRE_CAPACITY,
        RELEASE_CAPACITY,
        Admission,
        AttemptOutcome,
        CapacityRequest,
        ReleaseCapacity,
        RunPlan,
    )

# workflow.patched id (release 0.4): admission before each attempt, leases by GPU id, the
# pull and the attempt on the leased worker's queue, the release at the run's end, and the
# RUNNING notification sent once the run is admitted rather than at its start.
CAPACITY_PATCH = "capacity-admission"
# workflow.patched id (release 0.5): the attempt carries the run's placement epoch from its
# admission, so a copy left on a host taken for lost is fenced (store/fencing.py) once the
# run is placed again; its checkpoints go to a directory of its epoch.
REPLACEMENT_PATCH = "host-replacement-placement-epochs"
# workflow.patched id (release 0.6): the attempt activity gives the lease back itself once
# its container has exited and the run is over, so the next queued run starts while this
# one's output is drained, its container removed and its status recorded.
EARLY_RELEASE_PATCH = "capacity-release-on-exit"
# workflow.patched id (release 0.8): the placed pull and attempt stop waiting for their host
# once a worker reports it lost (the ``host_lost`` signal, from the workers table's last-seen,
# supervision/host_loss.py); the activity is cancelled and the run placed again at once.
FROZEN_HOST_PATCH = "host-lost-from-worker-last-seen"
_STORE_TIMEOUT = timedelta(seconds=30)
# A woken run whose admission met a busy database tries again soon: the GPU is waiting.
_STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=5)
)


def needs_admission(plan: RunPlan) -> bool:
    """Whether the job asks for anything a worker must set aside (GPUs, CPUs, memory)."""
    return plan.spec.needs_capacity()


class CapacityGate:
    """One run's lease or place in the queue, and the flag the wake-up signal sets."""

    def __init__(self) -> None:
        self._woken = False
        self._engaged = False
        # The latest placement epoch whose host a worker reported lost.
        self._lost_epoch: int | None = None

    def wake(self) -> None:
        self._woken = True

    def host_lost(self, epoch: int) -> None:
        """A worker saw the host of placement ``epoch`` silent for HOST_LOST_SECONDS."""
        if self._lost_epoch is None or epoch > self._lost_epoch:
            self._lost_epoch = epoch

    def is_lost(self, epoch: int) -> bool:
        return self._lost_epoch == epoch

    def forget_lost(self) -> None:
        """After an admission: only a report sent since counts (they repeat every beat)."""
        self._lost_epoch = None

    async def admit(
        self, plan: RunPlan, attempt: int, on_queued: Callable[[Admission], None]
    ) -> Admission:
        """Wait (queued) until the run holds a lease; returns it."""
        while True:
            # A signal that arrives while the activity runs is kept: no wake-up is lost.
            self._woken = False
            self._engaged = True
            admission: Admission = await workflow.execute_activity(
                ACQUIRE_CAPACITY,
                CapacityRequest(
                    job_id=plan.job_id,
                    run_id=plan.run_id,
                    attempt=attempt,
                    resources=plan.spec.resources,
                ),
                result_type=Admission,
                start_to_close_timeout=_STORE_TIMEOUT,
                retry_policy=_STORE_RETRY,
            )
            if admission.admitted:
                return admission
            on_queued(admission)
            try:
                await workflow.wait_condition(
                    lambda: self._woken, timeout=timedelta(seconds=plan.queue_poll_seconds)
                )
            except TimeoutError:
                pass

    async def release(self, plan: RunPlan) -> None:
        """Give back the lease or the place in the queue, if the run has either."""
        if not self._engaged:
            return
        self._engaged = False
        await workflow.execute_activity(
            RELEASE_CAPACITY,
            ReleaseCapacity(job_id=plan.job_id, run_id=plan.run_id),
            start_to_close_timeout=_STORE_TIMEOUT,
            retry_policy=_STORE_RETRY,
        )


async def run_admitted_attempt(
    plan: RunPlan,
    attempt: int,
    gate: CapacityGate,
    on_queued: Callable[[Admission], None],
    on_admitted: Callable[[], Awaitable[None]],
) -> AttemptOutcome:
    """Training attempt ``attempt`` once the run holds what it asks for."""
    if not needs_admission(plan):
        await on_admitted()
        return await run_attempt(plan, attempt)
    while True:
        placed = await gate.admit(plan, attempt, on_queued)
        gate.forget_lost()
        if not workflow.patched(REPLACEMENT_PATCH):
            placed = placed.model_copy(update={"epoch": None})
        await on_admitted()
        early = workflow.patched(EARLY_RELEASE_PATCH)
        epoch = placed.epoch
        lost = None
        if epoch is not None and workflow.patched(FROZEN_HOST_PATCH):
            lost = functools.partial(gate.is_lost, epoch)
        outcome = await run_placed_attempt(
            plan, attempt, placed, release_on_exit=early, host_lost=lost
        )
        if outcome is not None:
            return outcome
        # The worker did not take it within HOST_LOST_SECONDS, or a worker reported its host
        # lost: its lease goes, and the run is placed again (the next epoch), resuming from its
        # latest recorded checkpoint; the attempt number stays, so no retry is used.
        await gate.release(plan)
