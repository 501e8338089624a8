"""SQL and Temporal never overwrite each other: PUT, DELETE and the journal replay.

Two "replicas" are two apps built with ``create_app`` on separate Settings objects, sharing the
database (SQLite, and PostgreSQL through TEST_POSTGRES_URL) and the Temporal dev server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, ScheduleOverlapPolicy
from temporalio.service import RPCError

from core.settings import Settings
from jobs.definition_sync import DefinitionSync
from jobs.schedule_parts import SchedulePart
from jobs.temporal import JobSchedules, TemporalConnection
from store import jobs as job_store
from store import journal
from store.db import create_engine, create_sessionmaker
from store.migrate import upgrade
from store.models import Job, ScheduleSync, utcnow
from tests.conftest import api_client, temporal_cli, unique_name
from tests.store.test_store import postgres_url
from workflows.models import JobStatus

Sessions = async_sessionmaker[AsyncSession]
RPC_TIMEOUT = timedelta(seconds=5)


@pytest.fixture(params=["sqlite", "postgresql"])
async def backend(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The suite's settings on one backend: its SQLite file, or the PostgreSQL database."""
    if request.param == "sqlite":
        return settings
    url = postgres_url()
    await asyncio.to_thread(upgrade, url)
    return settings.model_copy(update={"database_url": url})


@pytest.fixture
async def sessions(backend: Settings) -> AsyncIterator[Sessions]:
    engine = create_engine(backend.sqlalchemy_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def schedules(settings: Settings) -> JobSchedules:
    temporal = TemporalConnection(
        settings.temporal_address, settings.temporal_namespace, RPC_TIMEOUT
    )
    return JobSchedules(temporal, settings.task_queue, RPC_TIMEOUT)


async def create(api: httpx.AsyncClient, **fields: Any) -> str:
    body = {"name": unique_name("sync"), "image": "x:1", "command": ["true"], **fields}
    response = await api.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def firing_times(temporal_client: Client, job_id: str) -> set[tuple[int, int]]:
    """(hour, minute) of the schedule's next action times, as Temporal computes them."""
    description = await temporal_client.get_schedule_handle(job_id).describe()
    times = description.info.next_action_times
    assert times, "the schedule has no next action times"
    return {(t.hour, t.minute) for t in times}


async def journalled(sessions: Sessions, job_id: str) -> bool:
    async with sessions() as session:
        found = await session.scalar(
            select(ScheduleSync.job_id).where(ScheduleSync.job_id == job_id)
        )
    return found is not None


async def age_entry(sessions: Sessions, job_id: str) -> None:
    async with sessions() as session:
        await session.execute(
            update(ScheduleSync)
            .where(ScheduleSync.job_id == job_id)
            .values(requested_at=utcnow() - timedelta(hours=1))
        )
        await session.commit()


async def test_racing_puts_on_two_replicas_converge(
    backend: Settings, sessions: Sessions, temporal_client: Client
) -> None:
    """Cron changes racing other changes: Temporal follows SQL's cron, no change is lost."""
    async with (
        api_client(backend.model_copy()) as one,
        api_client(backend.model_copy()) as two,
    ):
        job_id = await create(one, schedule="0 3 * * *")
        # Half change the cron, half a field the schedule's action holds: a writer that
        # sent its stale in-memory cron to Temporal along with its image would show here.
        bodies = [
            {"schedule": f"{minute} 3 * * *"} if minute % 2 else {"image": f"x:{minute}"}
            for minute in range(1, 21)
        ]
        answers = await asyncio.gather(
            *(
                (one if i % 2 else two).put(f"/jobs/{job_id}", json=body)
                for i, body in enumerate(bodies)
            )
        )
        assert [a.status_code for a in answers] == [200] * len(bodies), [
            a.text for a in answers if a.status_code != 200
        ]
        final = await two.get(f"/jobs/{job_id}")
        cron = final.json()["schedule"]
        # Every PUT was applied exactly once, each on top of the one before.
        assert final.headers["etag"] == f'"{job_id}.{1 + len(bodies)}"'
        assert {a.headers["etag"] for a in answers} == {
            f'"{job_id}.{version}"' for version in range(2, 2 + len(bodies))
        }
    minute = int(cron.split()[0])
    assert await firing_times(temporal_client, job_id) == {(3, minute)}
    assert not await journalled(sessions, job_id)
    await temporal_client.get_schedule_handle(job_id).delete()


async def test_racing_put_and_delete_leave_no_schedule_behind(
    backend: Settings, sessions: Sessions, schedules: JobSchedules
) -> None:
    async with (
        api_client(backend.model_copy()) as one,
        api_client(backend.model_copy()) as two,
    ):
        job_id = await create(one, schedule="0 3 * * *")
        puts = [
            (one if i % 2 else two).put(f"/jobs/{job_id}", json={"schedule": f"{i} 4 * * *"})
            for i in range(6)
        ]
        answers = await asyncio.gather(two.delete(f"/jobs/{job_id}"), *puts)
        assert answers[0].status_code == 204, answers[0].text
        assert {a.status_code for a in answers[1:]} <= {200, 404}
        assert (await one.get(f"/jobs/{job_id}")).status_code == 404
    assert not await schedules.exists(job_id)
    assert not await journalled(sessions, job_id)


async def test_a_cli_pause_survives_a_put_that_does_not_send_paused(
    settings: Settings, temporal_client: Client
) -> None:
    async with api_client(settings) as api:
        job_id = await create(api, schedule="0 3 * * *")
        temporal_cli(
            settings, "schedule", "toggle", "--schedule-id", job_id, "--pause", "--reason", "ops"
        )
        # At once, before any read or mirror tick could copy the pause into SQL.
        changed = await api.put(
            f"/jobs/{job_id}",
            json={
                "schedule": "30 4 * * *",
                "image": "x:2",
                "overlap_policy": "allow_all",
                "max_retries": 1,
            },
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["paused"] is True
        handle = temporal_client.get_schedule_handle(job_id)
        description = await handle.describe()
        assert description.schedule.state.paused is True
        assert description.schedule.state.note == "ops"
        assert description.schedule.policy.overlap == ScheduleOverlapPolicy.ALLOW_ALL
        assert await firing_times(temporal_client, job_id) == {(4, 30)}

        # paused is applied when it is sent.
        resumed = await api.put(f"/jobs/{job_id}", json={"paused": False})
        assert resumed.status_code == 200 and resumed.json()["paused"] is False
        assert (await handle.describe()).schedule.state.paused is False
        await api.delete(f"/jobs/{job_id}")


async def test_etag_is_sent_and_changes_with_each_update(api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/jobs",
        json={
            "name": unique_name("etag"),
            "image": "x:1",
            "command": ["true"],
            "schedule": "0 3 * * *",
        },
    )
    job_id = created.json()["job_id"]
    first = created.headers["etag"]
    assert first.startswith('"') and first.endswith('"') and job_id in first
    assert (await api.get(f"/jobs/{job_id}")).headers["etag"] == first

    changed = await api.put(f"/jobs/{job_id}", json={"max_retries": 4})
    assert changed.status_code == 200
    second = changed.headers["etag"]
    assert second != first
    assert (await api.get(f"/jobs/{job_id}")).headers["etag"] == second
    # Nothing sent, nothing changed.
    assert (await api.put(f"/jobs/{job_id}", json={})).headers["etag"] == second
    # A pause through the API leaves the definition's version as it was (documented).
    await api.post(f"/jobs/{job_id}/pause")
    assert (await api.get(f"/jobs/{job_id}")).headers["etag"] == second
    await api.delete(f"/jobs/{job_id}")


async def test_if_match_is_honoured(api: httpx.AsyncClient, temporal_client: Client) -> None:
    job_id = await create(api, schedule="0 3 * * *")
    stale = (await api.get(f"/jobs/{job_id}")).headers["etag"]
    matched = await api.put(
        f"/jobs/{job_id}", json={"schedule": "10 3 * * *"}, headers={"If-Match": stale}
    )
    assert matched.status_code == 200, matched.text
    current = matched.headers["etag"]

    for tag in (stale, f"W/{current}", '"other"'):
        refused = await api.put(
            f"/jobs/{job_id}",
            json={"schedule": "45 5 * * *", "max_retries": 9},
            headers={"If-Match": tag},
        )
        assert refused.status_code == 412, refused.text
        assert refused.json()["error_type"] == "PreconditionFailed"
        assert set(refused.json()) == {"detail", "error_type"}
    # Nothing changed, in SQL nor in Temporal.
    after = await api.get(f"/jobs/{job_id}")
    assert after.headers["etag"] == current
    assert (after.json()["schedule"], after.json()["max_retries"]) == ("10 3 * * *", 3)
    assert await firing_times(temporal_client, job_id) == {(3, 10)}

    # A list with the current tag, and "*", match.
    listed = await api.put(
        f"/jobs/{job_id}", json={"max_retries": 2}, headers={"If-Match": f'"x", {current}'}
    )
    assert listed.status_code == 200
    assert (await api.put(f"/jobs/{job_id}", json={}, headers={"If-Match": "*"})).status_code == 200

    # DELETE too: refused with a stale tag, the job and its schedule kept.
    refused_delete = await api.delete(f"/jobs/{job_id}", headers={"If-Match": current})
    assert refused_delete.status_code == 412
    assert (await api.get(f"/jobs/{job_id}")).status_code == 200
    assert await firing_times(temporal_client, job_id) == {(3, 10)}
    latest = (await api.get(f"/jobs/{job_id}")).headers["etag"]
    assert (await api.delete(f"/jobs/{job_id}", headers={"If-Match": latest})).status_code == 204
    with pytest.raises(RPCError):
        await temporal_client.get_schedule_handle(job_id).describe()


def job_row(job_id: str, schedule: str | None) -> Job:
    now = utcnow()
    return Job(
        job_id=job_id,
        name=unique_name(),
        image="x:1",
        command=["true"],
        schedule=schedule,
        max_retries=0,
        retry_count=0,
        checkpoint_path=f"/checkpoints/{job_id}",
        status=JobStatus.PENDING.value,
        created_at=now,
        updated_at=now,
    )


async def test_start_up_replay_leaves_young_entries_and_repairs_old_ones(
    settings: Settings, schedules: JobSchedules
) -> None:
    engine = create_engine(settings.sqlalchemy_url)
    sessions = create_sessionmaker(engine)
    rows = {}
    async with sessions() as session:
        for kind in ("in flight", "left behind"):
            job_id = await job_store.issue_job_id(session)
            # A create between committing its row and creating its schedule...
            await journal.journal_schedule_change(session, job_id)
            session.add(job_row(job_id, "0 2 * * *"))
            await session.commit()
            rows[kind] = job_id
    # ...whose process died an hour ago.
    await age_entry(sessions, rows["left behind"])

    async with api_client(settings):
        assert await schedules.exists(rows["left behind"])
        assert not await journalled(sessions, rows["left behind"])
        # The young one belongs to a request that may still be running on another replica.
        assert not await schedules.exists(rows["in flight"])
        assert await journalled(sessions, rows["in flight"])
    # That request finishes as it would have: no conflict, no orphan.
    async with sessions() as session:
        job = await job_store.get_job(session, rows["in flight"])
    await schedules.create(job, trigger_now=False)
    async with sessions() as session:
        await journal.clear_schedule_change(session, job.job_id)
    for job_id in rows.values():
        await schedules.delete(job_id)
    await engine.dispose()


async def test_replay_leaves_the_pause_alone_unless_the_change_was_about_it(
    settings: Settings, schedules: JobSchedules, temporal_client: Client
) -> None:
    engine = create_engine(settings.sqlalchemy_url)
    sessions = create_sessionmaker(engine)
    ids = {}
    async with sessions() as session:
        for parts in (SchedulePart.SPEC, SchedulePart.PAUSED):
            job_id = await job_store.issue_job_id(session)
            job = job_row(job_id, "0 2 * * *")
            session.add(job)
            await session.commit()
            await schedules.create(job, trigger_now=False)
            # Paused in the CLI; then a change whose SQL commit was not followed by Temporal.
            temporal_cli(
                settings,
                "schedule",
                "toggle",
                "--schedule-id",
                job_id,
                "--pause",
                "--reason",
                "cli",
            )
            await journal.journal_schedule_change(session, job_id, int(parts))
            job.schedule = "0 5 * * *"
            await session.commit()
            ids[parts] = job_id
    for job_id in ids.values():
        await age_entry(sessions, job_id)

    replayed = await DefinitionSync(sessions, schedules, RPC_TIMEOUT).replay(timedelta(minutes=1))
    assert replayed >= 2
    for parts, job_id in ids.items():
        description = await temporal_client.get_schedule_handle(job_id).describe()
        # The spec always follows SQL...
        assert {(t.hour, t.minute) for t in description.info.next_action_times} == {(5, 0)}
        # ...the pause state only when the journalled change was about it.
        assert description.schedule.state.paused is (parts != SchedulePart.PAUSED)
        assert not await journalled(sessions, job_id)
        await schedules.delete(job_id)
    await engine.dispose()
