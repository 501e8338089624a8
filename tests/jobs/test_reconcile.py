"""No orphans: a crash between the SQL write and the schedule change is repaired at start-up.

Each test leaves SQL and Temporal exactly as a process killed at that point would (the journal
entry written, one side changed, the other not), ages the entry past the replay's grace (the
start-up replay leaves younger ones to the requests that may still hold them), then starts
the API and checks the repair.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.app import create_app
from core.settings import Settings
from jobs.run_starts import new_run_id
from jobs.schedule_parts import SchedulePart
from jobs.temporal import JobSchedules, TemporalConnection
from store import jobs as job_store
from store import journal
from store.db import create_engine, create_sessionmaker
from store.models import Job, ScheduleSync, utcnow
from tests.conftest import api_client, expire_leader_lease, unique_name, wait_for_status
from workflows.models import JobStatus, Trigger


@pytest.fixture
async def parts(settings: Settings) -> AsyncIterator[tuple[object, JobSchedules]]:
    # The API started by each test replays the journal at start-up if it leads the cluster's
    # reconciler: the process "killed" here is taken to have held the lease, now run out.
    await expire_leader_lease(settings)
    engine = create_engine(settings.sqlalchemy_url)
    timeout = timedelta(seconds=5)
    temporal = TemporalConnection(settings.temporal_address, settings.temporal_namespace, timeout)
    yield create_sessionmaker(engine), JobSchedules(temporal, settings.task_queue, timeout)
    await engine.dispose()


async def age_entry(sessions: async_sessionmaker[AsyncSession], job_id: str) -> None:
    """Make the job's journal entry look left behind by a request that died an hour ago."""
    async with sessions() as session:
        await session.execute(
            update(ScheduleSync)
            .where(ScheduleSync.job_id == job_id)
            .values(requested_at=utcnow() - timedelta(hours=1))
        )
        await session.commit()


def new_job(job_id: str, image: str, command: list[str], schedule: str | None) -> Job:
    now = utcnow()
    return Job(
        job_id=job_id,
        name=unique_name(),
        image=image,
        command=command,
        schedule=schedule,
        max_retries=0,
        retry_count=0,
        checkpoint_path=f"/checkpoints/{job_id}",
        status=JobStatus.PENDING.value,
        created_at=now,
        updated_at=now,
    )


async def test_schedule_without_a_row_is_deleted(
    parts: tuple, settings: Settings, temporal_client: Client, worker: None
) -> None:
    sessions, schedules = parts
    async with sessions() as session:
        job_id = await job_store.issue_job_id(session)
        await journal.journal_schedule_change(session, job_id)
    # Crash after the schedule was created, before the row was committed.
    await schedules.create(new_job(job_id, "x", ["true"], "0 2 * * *"), trigger_now=False)
    assert await schedules.exists(job_id)
    await age_entry(sessions, job_id)

    async with api_client(settings) as api:
        assert not await schedules.exists(job_id)
        assert (await api.get(f"/jobs/{job_id}")).status_code == 404
    async with sessions() as session:
        # Its own entry: young entries of other tests are left to their requests.
        assert job_id not in await journal.pending_schedule_changes(session, timedelta(0))


async def test_row_without_a_schedule_gets_one_and_runs(
    parts: tuple, settings: Settings, busybox_image: str, worker: None
) -> None:
    sessions, schedules = parts
    async with sessions() as session:
        job_id = await job_store.issue_job_id(session)
        await journal.journal_schedule_change(session, job_id)
        session.add(new_job(job_id, busybox_image, ["sh", "-c", "echo repaired"], None))
        await session.commit()
    # Crash after the row was committed, before the schedule was created.
    assert not await schedules.exists(job_id)
    await age_entry(sessions, job_id)

    async with api_client(settings) as api:
        assert await schedules.exists(job_id)
        # A one-off job that never ran is started, as its creation would have done.
        done = await wait_for_status(api, job_id, {"completed", "failed"})
        assert done["status"] == "completed"


async def test_one_off_job_whose_claimed_run_never_started_is_started_under_its_claim(
    parts: tuple, settings: Settings, busybox_image: str, worker: None
) -> None:
    sessions, schedules = parts
    async with sessions() as session:
        job_id = await job_store.issue_job_id(session)
        run_id = new_run_id(job_id, Trigger.MANUAL)
        job = new_job(job_id, busybox_image, ["sh", "-c", "echo claimed"], None)
        job.active_run_id, job.claimed_at = run_id, utcnow()
        journal.stage_schedule_change(session, job_id)
        session.add(job)
        await session.commit()
    # Crash after the schedule was created, before the claimed run's workflow was started.
    await schedules.create(job)
    await age_entry(sessions, job_id)

    async with api_client(settings) as api:
        done = await wait_for_status(api, job_id, {"completed", "failed"})
        assert done["status"] == "completed" and done["latest_run_id"] == run_id
        runs = (await api.get(f"/jobs/{job_id}/runs")).json()["runs"]
        assert [(r["run_id"], r["trigger"]) for r in runs] == [(run_id, "manual")]
    async with sessions() as session:
        released = await job_store.get_job(session, job_id)
        assert released.active_run_id is None


async def test_schedule_ahead_of_a_rolled_back_update_is_reset(
    parts: tuple, settings: Settings, temporal_client: Client, worker: None
) -> None:
    sessions, schedules = parts
    async with sessions() as session:
        job_id = await job_store.issue_job_id(session)
        job = new_job(job_id, "x", ["true"], "0 2 * * *")
        session.add(job)
        await session.commit()
        await schedules.create(job, trigger_now=False)
        # PUT told Temporal "0 5 * * *" and died before its SQL transaction committed.
        await journal.journal_schedule_change(session, job_id)
        job.schedule = "0 5 * * *"
        await schedules.update(job, SchedulePart.SPEC)
        await session.rollback()
    await age_entry(sessions, job_id)

    handle = temporal_client.get_schedule_handle(job_id)
    assert (await handle.describe()).info.next_action_times[0].hour == 5
    async with api_client(settings) as api:
        assert (await handle.describe()).info.next_action_times[0].hour == 2
        assert (await api.get(f"/jobs/{job_id}")).json()["schedule"] == "0 2 * * *"


async def test_a_schedule_deleted_behind_our_back_is_503_then_recreated(
    settings: Settings, temporal_client: Client
) -> None:
    """Not a 500: the missing schedule is journalled, and the reconciler recreates it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            body = {"name": unique_name(), "image": "x:1", "command": ["true"]}
            created = await http.post("/jobs", json={**body, "schedule": "0 3 * * *"})
            job_id = created.json()["job_id"]
            await temporal_client.get_schedule_handle(job_id).delete()

            missing = await http.get(f"/jobs/{job_id}/schedule")
            assert missing.status_code == 503, missing.text
            assert missing.json()["error_type"] == "ServiceUnavailable"

            await app.state.jobs.reconcile(older_than=timedelta(0))
            again = await http.get(f"/jobs/{job_id}/schedule")
    assert again.status_code == 200, again.text
    assert again.json()["schedule"] == "0 3 * * *" and again.json()["next_run_times"]
