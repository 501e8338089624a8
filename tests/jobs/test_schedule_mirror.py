"""The reconciler's schedule mirror reads only what can have changed, plus a page a tick.

Real parts: the suite's Temporal dev server and worker, the real ``temporal`` CLI, SQLite.
The mirror is driven directly (not through the leader's 30 s ticks) so each test sees which
of its paths did the work: the paused listing, the ``ScheduleId IN (...)`` listings of
resumed and due jobs, or the sweep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from core.settings import Settings
from jobs.schedule_mirror import ScheduleMirror
from jobs.temporal import JobSchedules, TemporalConnection
from store import schedule_events
from store.db import create_engine, create_sessionmaker
from store.models import Job
from tests.conftest import eventually, temporal_cli, unique_name

YEARLY = "0 3 1 1 *"


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.sqlalchemy_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def schedules(settings: Settings, temporal_client: Client) -> JobSchedules:
    timeout = timedelta(seconds=settings.rpc_timeout_seconds)
    return JobSchedules(TemporalConnection.of(temporal_client), settings.task_queue, timeout)


async def create_job(api: httpx.AsyncClient, schedule: str = YEARLY) -> str:
    created = await api.post(
        "/jobs",
        json={
            "name": unique_name("mirror"),
            "image": "trainer:latest",
            "command": ["true"],
            "schedule": schedule,
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["job_id"])


async def row(sessions: async_sessionmaker[AsyncSession], job_id: str) -> Job:
    async with sessions() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        return job


async def set_next_run_at(
    sessions: async_sessionmaker[AsyncSession], job_id: str, moment: datetime | None
) -> None:
    async with sessions() as session:
        await session.execute(update(Job).where(Job.job_id == job_id).values(next_run_at=moment))
        await session.commit()


async def temporal_next(client: Client, job_id: str) -> datetime:
    description = await client.get_schedule_handle(job_id).describe()
    return description.info.next_action_times[0]


async def test_a_cli_pause_and_resume_reach_sql_without_the_sweep(
    api: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    schedules: JobSchedules,
) -> None:
    job_id = await create_job(api)
    mirror = ScheduleMirror(sessions, schedules, sweep_pages=0)  # the filtered paths only
    try:
        temporal_cli(settings, "schedule", "toggle", "--schedule-id", job_id, "--pause")

        async def paused() -> bool:
            await mirror.sync()
            job = await row(sessions, job_id)
            return job.paused and job.next_run_at is None

        assert await eventually(paused, timeout=30)
        async with sessions() as session:
            events = await schedule_events.recent_events(session, job_id)
        assert [(e.event, e.actor) for e in events][:1] == [("paused", "ui/cli")]

        temporal_cli(settings, "schedule", "toggle", "--schedule-id", job_id, "--unpause")
        expected = await temporal_next(temporal_client, job_id)

        async def resumed() -> bool:
            await mirror.sync()
            job = await row(sessions, job_id)
            return not job.paused and job.next_run_at == expected

        assert await eventually(resumed, timeout=30)
        assert mirror.sweeps_done == 0
    finally:
        await api.delete(f"/jobs/{job_id}")


async def test_next_run_at_that_has_passed_is_refreshed_at_the_next_tick(
    api: httpx.AsyncClient,
    temporal_client: Client,
    sessions: async_sessionmaker[AsyncSession],
    schedules: JobSchedules,
) -> None:
    job_id = await create_job(api)
    mirror = ScheduleMirror(sessions, schedules, sweep_pages=0)
    try:
        expected = await temporal_next(temporal_client, job_id)
        # What SQL holds once the mirrored firing has passed, and before the job is known.
        for stale in (datetime.now(UTC) - timedelta(minutes=1), None):
            await set_next_run_at(sessions, job_id, stale)
            async with sessions() as session:
                _, due = await schedule_events.mirror_candidates(session, datetime.now(UTC), 10**6)
            assert job_id in due

            async def refreshed() -> bool:
                await mirror.sync()
                return (await row(sessions, job_id)).next_run_at == expected

            assert await eventually(refreshed, timeout=30)
    finally:
        await api.delete(f"/jobs/{job_id}")


async def test_next_run_at_moves_on_after_a_real_firing(
    api: httpx.AsyncClient,
    temporal_client: Client,
    sessions: async_sessionmaker[AsyncSession],
    schedules: JobSchedules,
) -> None:
    job_id = await create_job(api, schedule="* * * * *")
    mirror = ScheduleMirror(sessions, schedules, sweep_pages=0)
    try:

        async def known() -> datetime | None:
            await mirror.sync()
            return (await row(sessions, job_id)).next_run_at

        first = await eventually(known, timeout=30)
        assert first is not None

        async def moved_on() -> bool:
            await mirror.sync()
            upcoming = (await row(sessions, job_id)).next_run_at
            return upcoming is not None and upcoming > first

        # The schedule fires at `first` (within a minute); the next tick after it lists the
        # firing after, as Temporal computes it.
        assert await eventually(moved_on, timeout=120, interval=1.0)
        description = await temporal_client.get_schedule_handle(job_id).describe()
        assert description.info.num_actions >= 1
        assert (await row(sessions, job_id)).next_run_at in description.info.next_action_times
    finally:
        await temporal_client.get_schedule_handle(job_id).pause()

        async def deleted() -> bool:
            return (await api.delete(f"/jobs/{job_id}")).status_code in (204, 404)

        await eventually(deleted, timeout=60, interval=1.0)


async def test_the_sweep_corrects_what_no_filter_finds(
    api: httpx.AsyncClient,
    temporal_client: Client,
    sessions: async_sessionmaker[AsyncSession],
    schedules: JobSchedules,
) -> None:
    job_id = await create_job(api)
    mirror = ScheduleMirror(sessions, schedules)
    try:
        expected = await temporal_next(temporal_client, job_id)
        # A wrong firing in the future (as after a cron changed in the UI): neither paused
        # nor due, so only the sweep can see it.
        wrong = expected + timedelta(days=400)
        await set_next_run_at(sessions, job_id, wrong)
        async with sessions() as session:
            paused, due = await schedule_events.mirror_candidates(session, datetime.now(UTC), 10**6)
        assert job_id not in paused and job_id not in due

        listed = len(await schedules.list_states())
        pages = listed // 1000 + 1

        async def corrected() -> bool:
            await mirror.sync()
            return (await row(sessions, job_id)).next_run_at == expected

        # Within a whole pass of the sweep (a page a tick), and then one more for visibility.
        assert await eventually(corrected, timeout=30)
        assert mirror.sweeps_done <= pages + 1
    finally:
        await api.delete(f"/jobs/{job_id}")


async def test_only_listed_rows_are_read_and_written(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    job_id = await create_job(api)
    other = await create_job(api)
    try:
        moment = datetime(2031, 1, 1, 3, tzinfo=UTC)
        async with sessions() as session:
            before = (await row(sessions, other)).next_run_at
            states = {job_id: (False, None, moment), "no-such-job": (True, None, None)}
            assert await schedule_events.mirror_states(session, states, actor="ui/cli") == 1
        assert (await row(sessions, job_id)).next_run_at == moment
        assert (await row(sessions, other)).next_run_at == before
    finally:
        await api.delete(f"/jobs/{job_id}")
        await api.delete(f"/jobs/{other}")
