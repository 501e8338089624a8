"""The attempt activity under placement epochs, on the suite's Docker engine.

A copy of a run whose epoch is no longer the run's (it was placed again while its host was
lost) stops when Temporal lets go of it and never starts again; a copy under the new epoch
on the same engine removes the old epoch's unit before it starts its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.activity import ActivityCancellationDetails
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.training import TrainingActivities
from core.settings import Settings
from store.models import Run
from tests.conftest import eventually
from tests.faults.test_interrupted_attempts import (  # noqa: F401  (fixtures)
    Attempt1,
    container_state,
    remove_container,
    sessions,
    training,
)
from workflows.models import FENCED, AttemptOutcome, RunAttemptInput


async def set_epoch(store: async_sessionmaker[AsyncSession], run_id: str, epoch: int) -> None:
    async with store() as session:
        await session.execute(update(Run).where(Run.run_id == run_id).values(placement_epoch=epoch))
        await session.commit()


async def start_and_interrupt(
    attempt: Attempt1,
    training: TrainingActivities,  # noqa: F811
    request: RunAttemptInput,
    details: ActivityCancellationDetails,
    before_cancel: Callable[[], Awaitable[None]] | None = None,
) -> None:
    env = ActivityEnvironment()
    beats: list[object] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    running = asyncio.create_task(env.run(training.run_training_container, request))

    async def trainer_up() -> bool:
        return attempt.starts() == 1 and len(beats) > 0

    await eventually(trainer_up, timeout=60)
    if before_cancel is not None:
        await before_cancel()
    env.cancel(cancellation_details=details)
    with pytest.raises(asyncio.CancelledError):
        await running


async def test_a_stale_copy_stops_when_let_go_and_never_starts_again(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],  # noqa: F811
    training: TrainingActivities,  # noqa: F811
    busybox_image: str,
) -> None:
    attempt = Attempt1(settings, busybox_image, "sleep 120")
    await attempt.create_run(sessions)
    await set_epoch(sessions, attempt.request.run_id, 1)
    stale = attempt.request.model_copy(update={"epoch": 1})
    try:
        # The run is placed again elsewhere; then Temporal lets go of this copy.
        await start_and_interrupt(
            attempt,
            training,
            stale,
            ActivityCancellationDetails(timed_out=True),
            lambda: set_epoch(sessions, stale.run_id, 2),
        )
        assert await asyncio.to_thread(container_state, attempt.name) is None, "left running"

        # A late retry of the stale copy starts nothing.
        retry = ActivityEnvironment()
        retry.info = dataclasses.replace(retry.info, attempt=2)
        with pytest.raises(ApplicationError) as fenced:
            await retry.run(training.run_training_container, stale)
    finally:
        await asyncio.to_thread(remove_container, attempt.name)
    assert fenced.value.type == FENCED and fenced.value.non_retryable
    assert attempt.starts() == 1


async def test_a_new_epoch_on_the_same_engine_replaces_the_old_epochs_unit(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],  # noqa: F811
    training: TrainingActivities,  # noqa: F811
    busybox_image: str,
) -> None:
    attempt = Attempt1(settings, busybox_image, '[ "$PLACEMENT_EPOCH" = 2 ] || sleep 120')
    await attempt.create_run(sessions)
    await set_epoch(sessions, attempt.request.run_id, 1)
    first = attempt.request.model_copy(update={"epoch": 1})
    try:
        # Its worker shuts down: the unit trains on for a retry that never comes, because
        # the host was taken for lost and the run placed again, on this same host.
        await start_and_interrupt(
            attempt, training, first, ActivityCancellationDetails(worker_shutdown=True)
        )
        assert await asyncio.to_thread(container_state, attempt.name) == "running"
        await set_epoch(sessions, first.run_id, 2)
        current = first.model_copy(update={"epoch": 2})
        outcome: AttemptOutcome = await ActivityEnvironment().run(
            training.run_training_container, current
        )
    finally:
        await asyncio.to_thread(remove_container, attempt.name)
    assert not outcome.reattached, "the new epoch followed the old epoch's unit"
    assert outcome.exit_code == 0
    assert attempt.starts() == 1
    assert (attempt.starts_file.parent / ".epoch-2" / ".starts").read_text().count("start") == 1
    assert await asyncio.to_thread(container_state, attempt.name) is None
