"""An attempt activity that fails on an engine error leaves nothing of its own running.

The engine answers the activity's poll with an error (a 500, as a daemon in trouble does).
The try fails as an infrastructure failure; the trainer keeps running for the retry, but
this try's output follower (a task and its reader thread) must be gone, not appending to
the attempt's log behind the retry's back. Once the failures reach INFRA_MAX_ATTEMPTS the
attempt is given up, and then the container goes too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from docker.errors import APIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.training import TrainingActivities
from core.settings import Settings
from runtimes.docker import DockerRuntime
from store.db import create_engine, create_sessionmaker
from store.log_files import attempt_log_path
from tests.conftest import eventually
from tests.faults.test_interrupted_attempts import Attempt1, container_state, remove_container


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.sqlalchemy_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


class EngineFailingInWait(DockerRuntime):
    """The real engine, except that its wait answers 500 once ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__(network_mode="none")
        self.failing = False

    async def wait(self, name: str, timeout: float) -> int | None:
        if self.failing:
            raise APIError("500 Server Error", explanation="containerd: ttrpc: closed")
        return await super().wait(name, timeout)


def output_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "output-stream" and t.is_alive()}


async def test_a_failed_try_leaves_no_follower_and_a_given_up_attempt_no_container(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], busybox_image: str
) -> None:
    local = settings.model_copy(update={"infra_max_attempts": 2})
    attempt = Attempt1(local, busybox_image, "while true; do echo tick; sleep 0.05; done")
    await attempt.create_run(sessions)
    engine = EngineFailingInWait()
    training = TrainingActivities(engine, sessions, local)
    log = attempt_log_path(local.log_dir, attempt.request.job_id, attempt.request.run_id, 1)
    threads_before = output_threads()
    beats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    try:
        running = asyncio.create_task(env.run(training.run_training_container, attempt.request))

        async def ticking() -> bool:
            return log.exists() and log.read_text().count("tick") > 5

        await eventually(ticking, timeout=60)
        engine.failing = True
        with pytest.raises(ApplicationError) as first:
            await running
        assert not first.value.non_retryable, "one failure of at most two"
        size = log.stat().st_size
        await asyncio.sleep(1.5)
        assert log.stat().st_size == size, "the failed try still writes the log"
        assert output_threads() <= threads_before, "the failed try's reader thread runs on"
        assert await asyncio.to_thread(container_state, attempt.name) == "running"

        # The retry carries the count in the last heartbeat's details and gives up.
        retry = ActivityEnvironment()
        retry.info = dataclasses.replace(retry.info, attempt=2, heartbeat_details=[beats[-1][0]])
        with pytest.raises(ApplicationError) as second:
            await retry.run(training.run_training_container, attempt.request)
        assert second.value.non_retryable
        assert "gave up" in second.value.message
        assert output_threads() <= threads_before
        assert await asyncio.to_thread(container_state, attempt.name) is None
    finally:
        await asyncio.to_thread(remove_container, attempt.name)
    assert attempt.starts() == 1
