"""The cluster's one SQL-Temporal reconciler: one leader at a time, fail-over, closed runs
found by visibility queries and finished with a compare-and-set, the schedule mirror.

Real parts: the suite's Temporal dev server, its worker and Docker engine, the real
``temporal`` CLI; SQLite files (the replica test gets a database of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus

from api.app import create_app
from core.settings import Settings
from jobs.closed_runs import ClosedRunFinder
from jobs.control_plane import LEADER_LEASE, ControlPlaneReconciler
from jobs.schedule_control import SchedulingService
from jobs.service import JobService
from jobs.temporal import JobSchedules, TemporalConnection
from store import jobs as job_store
from store import leases
from store import runs as run_store
from store.db import create_engine, create_sessionmaker
from store.jobs import new_job
from store.migrate import upgrade
from store.models import Job, Lease, Run, utcnow
from tests.conftest import eventually, make_settings, temporal_cli, unique_name, wait_for_status
from tests.store.test_store import postgres_url, reset_schema
from workflows.models import JobStatus

JOB_FIELDS = {"image": "trainer:latest", "command": ["true"], "max_retries": 0}


def reconciler(
    settings: Settings, client: Client, sessions: async_sessionmaker[AsyncSession], role: str
) -> ControlPlaneReconciler:
    """A reconciler as the worker builds one (worker.build_control_plane)."""
    temporal = TemporalConnection.of(client)
    timeout = timedelta(seconds=settings.rpc_timeout_seconds)
    schedules = JobSchedules(temporal, settings.task_queue, timeout)
    scheduling = SchedulingService(sessions, schedules, settings)
    service = JobService(sessions, schedules, settings, scheduling)
    return ControlPlaneReconciler(sessions, temporal, service, scheduling, settings, role)


async def expire_lease(sessions: async_sessionmaker[AsyncSession]) -> None:
    """What a leader's death looks like once its lease has run out."""
    async with sessions() as session:
        await session.execute(
            update(Lease).where(Lease.name == LEADER_LEASE).values(expires_at_ms=0)
        )
        await session.commit()


async def test_two_api_replicas_one_reconciles_and_the_other_takes_over(
    temporal_client: Client, tmp_path: Path
) -> None:
    settings = make_settings(
        temporal_client,
        tmp_path,
        reconcile_interval_seconds=0.1,
        leader_lease_seconds=30.0,
    )
    await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
    apps = [create_app(settings), create_app(settings)]
    stacks = [contextlib.AsyncExitStack(), contextlib.AsyncExitStack()]
    try:
        for app, stack in zip(apps, stacks, strict=True):
            await stack.enter_async_context(app.router.lifespan_context(app))
        planes: list[ControlPlaneReconciler] = [app.state.control_plane for app in apps]

        async def ticked(planes: list[ControlPlaneReconciler], count: int) -> bool:
            return sum(p.ticks_led for p in planes) >= count

        await eventually(lambda: ticked(planes, 10), timeout=30)
        leaders = [p for p in planes if p.ticks_led]
        assert len(leaders) == 1, [p.ticks_led for p in planes]
        (leader,) = leaders
        follower = planes[1 - planes.index(leader)]

        # The leader's replica shuts down: it gives the lease up, the other one leads.
        await stacks[planes.index(leader)].aclose()
        led_before = leader.ticks_led
        await eventually(lambda: ticked([follower], 3), timeout=30)
        assert leader.ticks_led == led_before
    finally:
        for stack in stacks:
            await stack.aclose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_dead_leader_is_replaced_once_its_lease_runs_out(
    temporal_client: Client, tmp_path: Path, backend: str
) -> None:
    settings = make_settings(temporal_client, tmp_path, leader_lease_seconds=1.0)
    url = settings.sqlalchemy_url
    if backend == "sqlite":
        await asyncio.to_thread(upgrade, url)
    else:
        url = postgres_url()
        await asyncio.to_thread(reset_schema, url)
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    try:
        first = reconciler(settings, temporal_client, sessions, "worker")
        second = reconciler(settings, temporal_client, sessions, "worker")
        assert await first.tick() is not None
        assert await second.tick() is None, "the lease is held: the second does nothing"
        assert await first.tick() is not None, "the leader renews at each tick"
        async with sessions() as session:  # a change to count: the leader folds it
            session.add(new_job("train-0dead0ea", {**JOB_FIELDS, "name": unique_name("lease")}))
            await session.commit()
        # The first process dies (SIGKILL: nothing released). Within a lease, the second
        # takes over; the first, were it to come back, no longer leads.
        report = await eventually(second.tick, timeout=15, interval=0.2)
        assert report.runs_finished == 0 and report.deltas_folded >= 1
        async with sessions() as session:
            assert (await job_store.count_by_status(session))[JobStatus.PENDING] == 1
        assert await first.tick() is None
        async with sessions() as session:
            assert await leases.holder_of(session, LEADER_LEASE) == second.holder
    finally:
        await engine.dispose()


async def start_sleeping_job(api: httpx.AsyncClient, image: str) -> dict[str, object]:
    created = await api.post(
        "/jobs",
        json={"name": unique_name("closed"), "image": image, "command": ["sleep", "120"]},
    )
    assert created.status_code == 201, created.text
    return await wait_for_status(api, created.json()["job_id"], {"running"})


async def test_run_terminated_with_the_cli_is_finished_by_the_leader(
    api: httpx.AsyncClient, temporal_client: Client, settings: Settings, busybox_image: str
) -> None:
    job = await start_sleeping_job(api, busybox_image)
    run_id = str(job["latest_run_id"])
    temporal_cli(settings, "workflow", "terminate", "--workflow-id", run_id, "--reason", "ops")

    engine = create_engine(settings.sqlalchemy_url)
    sessions = create_sessionmaker(engine)
    plane = reconciler(settings, temporal_client, sessions, "test")
    try:
        # Whoever led (the suite's API, ticking every 30 s) is taken to have died.
        await expire_lease(sessions)

        async def finished() -> dict[str, object]:
            await plane.tick()
            body: dict[str, object] = (await api.get(f"/jobs/{job['job_id']}")).json()
            assert body["status"] == "cancelled", body["status"]
            return body

        # Visibility may take a moment to show the run closed. In the whole suite the
        # session's worker and API compete for the lease too: whichever leads finishes it.
        await eventually(finished, timeout=60)
    finally:
        await plane.release()
        await engine.dispose()
    body = (await api.get(f"/jobs/{job['job_id']}")).json()
    assert body["status"] == "cancelled"
    assert "terminated" in body["error_message"]


class RacedFinder(ClosedRunFinder):
    """Lets a run record its own end between the finder's read and its decision."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], client: Client) -> None:
        super().__init__(sessions, client)
        self.raced: list[str] = []

    async def _closed(self, active: Sequence[Run]) -> list[tuple[Run, WorkflowExecutionStatus]]:
        closed = await super()._closed(active)
        for run, _status in closed:
            self.raced.append(run.run_id)
            async with self._sessions() as session:
                await run_store.record_run_status(
                    session,
                    job_id=run.job_id,
                    run_id=run.run_id,
                    status=JobStatus.COMPLETED,
                    attempt=run.attempt,
                    retry_count=run.retry_count,
                    at=utcnow(),
                    error_message=None,
                    exit_code=0,
                )
        return closed


async def test_final_status_written_during_the_tick_wins(
    api: httpx.AsyncClient, temporal_client: Client, settings: Settings, busybox_image: str
) -> None:
    job = await start_sleeping_job(api, busybox_image)
    run_id = str(job["latest_run_id"])
    await temporal_client.get_workflow_handle(run_id).terminate("behind our back")

    engine = create_engine(settings.sqlalchemy_url)
    sessions = create_sessionmaker(engine)
    finder = RacedFinder(sessions, temporal_client)
    try:

        async def seen_closed() -> bool:
            description = await temporal_client.get_workflow_handle(run_id).describe()
            return description.status == WorkflowExecutionStatus.TERMINATED

        await eventually(seen_closed)

        async def raced() -> bool:
            await finder.finish()
            return run_id in finder.raced

        # Visibility may take a moment to show the run closed.
        assert await eventually(raced, timeout=30)
        async with sessions() as session:
            run = await session.get(Run, run_id)
        assert run is not None and run.status == "completed", "the run's own status stands"
    finally:
        await engine.dispose()
    body = (await api.get(f"/jobs/{job['job_id']}")).json()
    assert body["status"] == "completed" and body["error_message"] is None


async def test_a_pause_made_with_the_cli_reaches_sql_through_the_leader(
    api: httpx.AsyncClient, temporal_client: Client, settings: Settings
) -> None:
    created = await api.post(
        "/jobs",
        json={
            "name": unique_name("mirror"),
            "image": "trainer:latest",
            "command": ["true"],
            "schedule": "0 3 1 1 *",
        },
    )
    job_id = created.json()["job_id"]
    temporal_cli(settings, "schedule", "toggle", "--schedule-id", job_id, "--pause")
    engine = create_engine(settings.sqlalchemy_url)
    sessions = create_sessionmaker(engine)
    plane = reconciler(settings, temporal_client, sessions, "test")
    try:
        await expire_lease(sessions)

        async def mirrored() -> bool:
            report = await plane.tick()
            assert report is not None
            async with sessions() as session:
                row = await session.get(Job, job_id)
                assert row is not None
                return row.paused and row.next_run_at is None

        # Read from SQL directly: GET /jobs/{id} would refresh the mirror by itself.
        assert await eventually(mirrored, timeout=30)
    finally:
        await plane.release()
        await engine.dispose()
        await api.delete(f"/jobs/{job_id}")
