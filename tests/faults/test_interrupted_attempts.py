"""The attempt activity interrupted by Temporal rather than by a person (real Docker, SQLite).

Only a cancel the workflow requested stops the trainer. Any other cancel (a heartbeat that
timed out, a server that no longer knows the activity, a pause, a worker shutdown) leaves
the container training for the retried activity, which reattaches to it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import NotFound
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.activity import ActivityCancellationDetails
from temporalio.testing import ActivityEnvironment

from activities.training import TrainingActivities
from core.settings import Settings
from runtimes.base import unit_name
from runtimes.docker import DockerRuntime
from store import jobs as job_store
from store import runs as run_store
from store.db import create_engine, create_sessionmaker
from store.models import Attempt, utcnow
from tests.conftest import eventually
from workflows.models import AttemptOutcome, RunAttemptInput, TrainingSpec


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.sqlalchemy_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


class Attempt1:
    """Attempt 1 of a fresh run of a fresh job whose trainer runs ``script`` in busybox sh."""

    def __init__(self, settings: Settings, image: str, script: str) -> None:
        job_id = f"faults-{uuid.uuid4().hex[:8]}"
        self.request = RunAttemptInput(
            job_id=job_id,
            run_id=f"train-{job_id}",
            attempt=1,
            spec=TrainingSpec(
                image=image,
                # Each start of the trainer leaves a line in a dot file (not a checkpoint).
                command=["sh", "-c", f'echo start >> "$CHECKPOINT_DIR/.starts"; {script}'],
                checkpoint_path=f"/checkpoints/{job_id}",
            ),
        )
        self.name = unit_name(job_id, self.request.run_id, 1)
        self.starts_file = settings.checkpoint_root_dir / "checkpoints" / job_id / ".starts"

    async def create_run(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        spec = self.request.spec
        async with sessions() as session:
            fields = spec.model_dump() | {"name": self.request.job_id, "max_retries": 0}
            session.add(job_store.new_job(self.request.job_id, fields))
            await session.commit()
            await run_store.start_run(
                session, self.request.job_id, self.request.run_id, "exec-1", utcnow(), "sdk"
            )

    def starts(self) -> int:
        path: Path = self.starts_file
        return path.read_text().count("start") if path.exists() else 0


def container_state(name: str) -> str | None:
    """The container's status (``running``, ``exited``...), None when there is none."""
    client = docker.from_env()
    try:
        return str(client.containers.get(name).status)
    except NotFound:
        return None
    finally:
        client.close()


def remove_container(name: str) -> None:
    client = docker.from_env()
    try:
        client.api.remove_container(name, force=True)
    except NotFound:
        pass
    finally:
        client.close()


@pytest.fixture
async def training(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], busybox_image: str
) -> TrainingActivities:
    return TrainingActivities(DockerRuntime(network_mode="none"), sessions, settings)


async def _start_and_interrupt(
    attempt: Attempt1, training: TrainingActivities, details: ActivityCancellationDetails
) -> list[Any]:
    """Run the activity until the trainer is up, cancel it with ``details``; its heartbeats."""
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    running = asyncio.create_task(env.run(training.run_training_container, attempt.request))

    async def trainer_up() -> bool:
        return attempt.starts() == 1 and len(beats) > 0

    await eventually(trainer_up, timeout=60)
    env.cancel(cancellation_details=details)
    with pytest.raises(asyncio.CancelledError):
        await running
    return beats


@pytest.mark.parametrize(
    "details",
    [
        ActivityCancellationDetails(timed_out=True),
        ActivityCancellationDetails(not_found=True),
        ActivityCancellationDetails(paused=True),
        ActivityCancellationDetails(worker_shutdown=True),
    ],
    ids=["heartbeat-timeout", "not-found", "paused", "worker-shutdown"],
)
async def test_an_interruption_leaves_the_trainer_running_for_the_retry(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    training: TrainingActivities,
    busybox_image: str,
    details: ActivityCancellationDetails,
) -> None:
    attempt = Attempt1(settings, busybox_image, "sleep 4; exit 0")
    await attempt.create_run(sessions)
    try:
        beats = await _start_and_interrupt(attempt, training, details)
        assert await asyncio.to_thread(container_state, attempt.name) == "running"

        # Temporal retries the activity with the last heartbeat's details.
        retry = ActivityEnvironment()
        retry.info = dataclasses.replace(retry.info, attempt=2, heartbeat_details=[beats[-1][0]])
        outcome: AttemptOutcome = await retry.run(training.run_training_container, attempt.request)
    finally:
        await asyncio.to_thread(remove_container, attempt.name)
    assert outcome.exit_code == 0 and outcome.reattached
    assert attempt.starts() == 1, "the retry reattached instead of starting the trainer again"
    assert "started_at" in beats[-1][0] and beats[-1][0]["container"] == attempt.name


async def test_a_requested_cancel_stops_the_trainer(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    training: TrainingActivities,
    busybox_image: str,
) -> None:
    attempt = Attempt1(settings, busybox_image, "sleep 120")
    await attempt.create_run(sessions)
    try:
        await _start_and_interrupt(
            attempt, training, ActivityCancellationDetails(cancel_requested=True)
        )
        assert await asyncio.to_thread(container_state, attempt.name) is None, "not removed"
    finally:
        await asyncio.to_thread(remove_container, attempt.name)
    async with sessions() as session:
        row = await session.get(Attempt, (attempt.request.run_id, 1))
    assert row is not None and row.ended_at is not None
    assert attempt.starts() == 1


class SlowToReportStart(DockerRuntime):
    """An engine that has started the container but takes its time to say so."""

    def __init__(self) -> None:
        super().__init__(network_mode="none")
        self.started = asyncio.Event()

    async def start(self, spec: Any) -> Any:
        result = await super().start(spec)
        self.started.set()
        await asyncio.sleep(2)
        return result


@pytest.mark.parametrize("requested", [True, False], ids=["requested", "timed-out"])
async def test_a_cancel_while_the_container_starts(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    busybox_image: str,
    requested: bool,
) -> None:
    """A cancel lands in whatever phase the activity is in, not only in its wait loop."""
    attempt = Attempt1(settings, busybox_image, "sleep 120")
    await attempt.create_run(sessions)
    engine = SlowToReportStart()
    training = TrainingActivities(engine, sessions, settings)
    env = ActivityEnvironment()
    try:
        running = asyncio.create_task(env.run(training.run_training_container, attempt.request))
        await asyncio.wait_for(engine.started.wait(), 60)
        env.cancel(
            cancellation_details=ActivityCancellationDetails(
                cancel_requested=requested, timed_out=not requested
            )
        )
        with pytest.raises(asyncio.CancelledError):
            await running
        state = await asyncio.to_thread(container_state, attempt.name)
    finally:
        await asyncio.to_thread(remove_container, attempt.name)
    assert state == (None if requested else "running")


class SlowEngine(DockerRuntime):
    """A Docker engine slow to start and to remove containers (a busy host, a big image)."""

    def __init__(self, beats: list[Any]) -> None:
        super().__init__(network_mode="none")
        self.beats = beats
        self.beats_while_slow: dict[str, int] = {}

    async def _slowly(self, phase: str) -> None:
        before = len(self.beats)
        await asyncio.sleep(1.5)
        self.beats_while_slow[phase] = len(self.beats) - before

    async def start(self, spec: Any) -> Any:
        await self._slowly("start")
        return await super().start(spec)

    async def remove(self, name: str) -> None:
        await self._slowly("remove")
        await super().remove(name)


async def test_heartbeats_cover_every_phase(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], busybox_image: str
) -> None:
    attempt = Attempt1(settings, busybox_image, "exit 0")
    await attempt.create_run(sessions)
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    engine = SlowEngine(beats)
    training = TrainingActivities(engine, sessions, settings)
    try:
        outcome: AttemptOutcome = await env.run(training.run_training_container, attempt.request)
    finally:
        await asyncio.to_thread(remove_container, attempt.name)
    assert outcome.exit_code == 0
    # Every poll interval (0.3 s here) while the engine works, not only in the wait loop.
    assert engine.beats_while_slow["start"] >= 3, engine.beats_while_slow
    assert engine.beats_while_slow["remove"] >= 3, engine.beats_while_slow
    assert beats[-1][0]["started_at"] is not None


async def test_a_retry_of_a_finished_attempt_reports_it_without_starting_anything(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    training: TrainingActivities,
    busybox_image: str,
) -> None:
    """The first try recorded the exit, then lost its result (say, Temporal was away)."""
    attempt = Attempt1(settings, busybox_image, "echo training failed; exit 3")
    await attempt.create_run(sessions)
    try:
        first: AttemptOutcome = await ActivityEnvironment().run(
            training.run_training_container, attempt.request
        )
        assert first.exit_code == 3 and not first.reattached
        async with sessions() as session:
            recorded = await session.get(Attempt, (attempt.request.run_id, 1))
        assert recorded is not None and recorded.ended_at is not None

        retry = ActivityEnvironment()
        retry.info = dataclasses.replace(retry.info, attempt=2)
        again: AttemptOutcome = await retry.run(training.run_training_container, attempt.request)
        assert await asyncio.to_thread(container_state, attempt.name) is None
    finally:
        await asyncio.to_thread(remove_container, attempt.name)
    assert again.exit_code == 3 and again.reattached and not again.timed_out
    assert "training failed" in again.log_tail
    assert attempt.starts() == 1, "the finished trainer was started again"
    async with sessions() as session:
        row = await session.get(Attempt, (attempt.request.run_id, 1))
    assert row is not None
    assert (row.started_at, row.ended_at, row.exit_code) == (
        recorded.started_at,
        recorded.ended_at,
        recorded.exit_code,
    )


async def test_a_retry_of_an_attempt_stopped_at_its_limit_reports_the_timeout(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    training: TrainingActivities,
    busybox_image: str,
) -> None:
    attempt = Attempt1(settings, busybox_image, "sleep 60")
    attempt.request.spec.timeout_seconds = 1
    await attempt.create_run(sessions)
    try:
        first: AttemptOutcome = await ActivityEnvironment().run(
            training.run_training_container, attempt.request
        )
        again: AttemptOutcome = await ActivityEnvironment().run(
            training.run_training_container, attempt.request
        )
    finally:
        await asyncio.to_thread(remove_container, attempt.name)
    assert first.timed_out and first.exit_code != 0
    assert again.timed_out and again.exit_code == first.exit_code and again.reattached
    assert attempt.starts() == 1
