"""The self-fence and the attempt activity, on the suite's Docker engine (real Docker, SQLite).

The worker's registration is not renewed past the deadline: the fence stops and removes the
attempt's unit; the activity ends with the retryable ``SelfFenced`` error, records no exit
and counts no infrastructure failure; a try while fenced starts nothing; once renewed, the
next try starts a new unit that resumes from the latest recorded checkpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.self_fence import SelfFence
from activities.training import TrainingActivities
from core.settings import Settings
from runtimes.docker import DockerRuntime
from store import checkpoints
from store import runs as run_store
from tests.conftest import eventually, make_settings, unique_name
from tests.faults.test_interrupted_attempts import (  # noqa: F401  (fixture)
    Attempt1,
    container_state,
    remove_container,
    sessions,
)
from workflows.models import SELF_FENCED

# A checkpoint a second; each start notes its resume point.
TRAINER = (
    'echo "${RESUME_FROM:--}" >> "$CHECKPOINT_DIR/.resumed"; i=0; '
    'while true; do i=$((i+1)); echo $i > "$CHECKPOINT_DIR/step-$i"; sleep 1; done'
)


def test_the_deadline_defaults_below_the_lease_and_host_loss_and_is_checked(
    settings: Settings,
) -> None:
    assert settings.self_fence_deadline == min(60.0, 600.0) / 2
    values: dict[str, Any] = {"_env_file": None, "worker_lost_seconds": 60}
    assert Settings(**values, host_lost_seconds=30).self_fence_deadline == 15
    assert Settings(**values, self_fence_seconds=20).self_fence_deadline == 20
    assert Settings(**values, self_fence_seconds="").self_fence_seconds is None
    bad_values: list[dict[str, Any]] = [
        {"self_fence_seconds": 60},
        {"self_fence_seconds": 40, "host_lost_seconds": 40},
    ]
    for bad in bad_values:
        with pytest.raises(ValidationError, match="below WORKER_LOST_SECONDS"):
            Settings(**values, **bad)
    with pytest.raises(ValidationError, match="above WORKER_HEARTBEAT_SECONDS"):
        Settings(**values, self_fence_seconds=5, worker_heartbeat_seconds=5)
    # Unset, the deadline is half of the smaller; a heartbeat as slow as that is refused (it
    # tripped the fence between every two renewals of a worker with HOST_LOST_SECONDS=5).
    with pytest.raises(ValidationError, match="more than twice WORKER_HEARTBEAT_SECONDS"):
        Settings(**values, host_lost_seconds=5, worker_heartbeat_seconds=5)
    with pytest.raises(ValidationError, match="more than twice WORKER_HEARTBEAT_SECONDS"):
        Settings(_env_file=None, worker_lost_seconds=10, worker_heartbeat_seconds=5)
    assert (
        Settings(**values, host_lost_seconds=5, worker_heartbeat_seconds=1).self_fence_deadline
        == 2.5
    )


async def test_a_fenced_worker_stops_its_unit_uncounted_and_restarts_it_once_renewed(
    temporal_client: Client,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],  # noqa: F811
    busybox_image: str,
) -> None:
    # A deployment of its own: the fence stops every unit of its deployment on the engine.
    local = make_settings(temporal_client, settings.data_dir, task_queue=unique_name("fence"))
    runtime = DockerRuntime(network_mode="none")
    fence = SelfFence(runtime, local.deployment, 0.5, local.stop_grace_seconds)
    training = TrainingActivities(runtime, sessions, local, fence)
    attempt = Attempt1(local, busybox_image, TRAINER)
    await attempt.create_run(sessions)
    resumed = attempt.starts_file.parent / ".resumed"
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    try:
        await fence.renewed()
        running = asyncio.create_task(env.run(training.run_training_container, attempt.request))

        async def checkpoints_recorded() -> bool:
            async with sessions() as session:
                latest = await checkpoints.latest_checkpoint(session, attempt.request.job_id, None)
            return len(beats) > 0 and latest is not None

        await eventually(checkpoints_recorded, timeout=60)
        await asyncio.sleep(1.0)  # the deadline passes without a renewal
        await fence.check()
        assert await asyncio.to_thread(container_state, attempt.name) is None
        with pytest.raises(ApplicationError) as stopped:
            await running

        # While fenced, a try starts nothing.
        retry = ActivityEnvironment()
        retry.info = dataclasses.replace(
            retry.info, attempt=2, heartbeat_details=[beats[-1][0]] if beats else []
        )
        with pytest.raises(ApplicationError) as refused:
            await retry.run(training.run_training_container, attempt.request)
        starts_while_fenced = attempt.starts()

        # Renewed: the next try starts the trainer again, from the latest checkpoint.
        await fence.renewed()
        again = asyncio.create_task(retry.run(training.run_training_container, attempt.request))

        async def restarted() -> bool:
            return attempt.starts() == 2

        await eventually(restarted, timeout=60)
        async with sessions() as session:
            row = await run_store.find_attempt(session, attempt.request.run_id, 1)
        retry.cancel()
        with pytest.raises(asyncio.CancelledError):
            await again
    finally:
        await asyncio.to_thread(remove_container, attempt.name)
    for error in (stopped.value, refused.value):
        assert error.type == SELF_FENCED and not error.non_retryable, error
    # Not counted: the heartbeat details carry no infrastructure failure.
    assert all(beat[0].get("infra_failures", 0) == 0 for beat in beats), beats
    assert starts_while_fenced == 1
    assert row is not None and row.ended_at is None and row.exit_code is None, row
    lines = resumed.read_text().splitlines()
    assert lines[0] == "-" and lines[1].rsplit("/", 1)[1].startswith("step-"), lines
