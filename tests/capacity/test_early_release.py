"""A run's GPU lease goes as soon as its container has exited, before the run is recorded.

A worker with one fake GPU (``WORKER_GPUS=0``) holds every attempt at ``FAULT_PAUSE_AT=finish``:
the trainer has exited, and its output is not drained, its container not removed and nothing
of its end recorded. There the first run's lease must already be gone and the queued run must
get the GPU, while the first run still shows ``running``; and at no moment may two of their
containers run at once, or two leases of GPU 0 exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import docker
import pytest
from sqlalchemy import select
from temporalio.client import Client

from activities.fault_points import fault_marker
from runtimes.base import LABEL_JOB_ID
from store.db import create_engine, create_sessionmaker
from store.migrate import upgrade
from store.models import GpuLease
from tests.capacity.test_gpu_queue import create, job, seen_gpus, stop
from tests.conftest import api_client, eventually, make_settings, wait_for_status
from worker import build_worker


def paused_at(marker: Path) -> Callable[[], Awaitable[bool]]:
    """A check for ``eventually``: an attempt is paused at the fault point."""

    async def check() -> bool:
        return marker.exists()

    return check


def _containers(job_ids: list[str]) -> dict[str, list[str]]:
    """The states of the containers of ``job_ids``, by job id."""
    client = docker.from_env()
    try:
        found: dict[str, list[str]] = {job_id: [] for job_id in job_ids}
        for job_id in job_ids:
            for row in client.api.containers(
                all=True, filters={"label": f"{LABEL_JOB_ID}={job_id}"}
            ):
                found[job_id].append(row["State"])
        return found
    finally:
        client.close()


async def test_lease_released_when_the_container_exits_before_the_run_is_recorded(
    temporal_client: Client, busybox_image: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    settings = make_settings(
        temporal_client,
        tmp_path,
        task_queue=f"tests-early-{suffix}",
        worker_name=f"early-host-{suffix}",
        worker_gpus="0",
        worker_cpus=2,
        worker_memory="4g",
        gpu_device_requests=False,
        fault_pause_at="finish",
        poll_interval_seconds=0.1,
    )
    await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
    engine = create_engine(settings.sqlalchemy_url)
    sessions = create_sessionmaker(engine)
    marker = fault_marker(settings, "finish")
    running_together: list[dict[str, list[str]]] = []
    double_leases: list[list[str]] = []

    async def watch(job_ids: list[str]) -> None:
        """Samples, all along: containers running at once, and GPU 0's lease rows."""
        while True:
            states = await asyncio.to_thread(_containers, job_ids)
            if sum(state.count("running") for state in states.values()) > 1:
                running_together.append(states)
            async with sessions() as session:
                holders = list(
                    await session.scalars(select(GpuLease.run_id).where(GpuLease.gpu == "0"))
                )
            if len(holders) > 1:
                double_leases.append(holders)
            await asyncio.sleep(0.02)

    try:
        async with build_worker(settings, temporal_client) as workers, workers:
            async with api_client(settings) as api:
                first = await create(api, busybox_image, {"gpus": 1})
                await wait_for_status(api, first, {"running"})
                assert await seen_gpus(api, settings, first) == "GPUS=0 NVIDIA=0"
                second = await create(api, busybox_image, {"gpus": 1})
                await wait_for_status(api, second, {"queued"})
                watcher = asyncio.create_task(watch([first, second]))
                try:
                    first_run = (await job(api, first))["latest_run_id"]
                    stop(settings, await job(api, first))

                    # The first attempt is paused after its trainer's exit, before its end.
                    await eventually(paused_at(marker), timeout=60)
                    assert _containers([first])[first] == ["exited"]

                    async def first_lease_gone() -> bool:
                        async with sessions() as session:
                            rows = await session.scalars(
                                select(GpuLease).where(GpuLease.run_id == first_run)
                            )
                            return not rows.all()

                    await eventually(first_lease_gone, timeout=30)
                    # The queued run got GPU 0 and trains while the first is still unrecorded.
                    await wait_for_status(api, second, {"running"})
                    assert await seen_gpus(api, settings, second) == "GPUS=0 NVIDIA=0"
                    assert (await job(api, first))["status"] == "running"
                    assert (await job(api, first))["latest_run_id"] == first_run
                    states = _containers([first, second])
                    assert states == {first: ["exited"], second: ["running"]}, states

                    # Let it go on: the first run is recorded completed, its container removed.
                    marker.unlink()
                    await wait_for_status(api, first, {"completed"}, timeout=60)
                    stop(settings, await job(api, second))
                    await eventually(paused_at(marker), timeout=60)
                    marker.unlink()
                    await wait_for_status(api, second, {"completed"}, timeout=60)
                finally:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
                assert _containers([first, second]) == {first: [], second: []}
                async with sessions() as session:
                    assert not (await session.scalars(select(GpuLease))).all()
    finally:
        marker.unlink(missing_ok=True)
        await engine.dispose()
    assert not running_together, running_together
    assert not double_leases, double_leases


@pytest.mark.parametrize("exit_code", [3])
async def test_a_failed_attempt_with_retries_left_keeps_its_lease(
    temporal_client: Client, busybox_image: str, tmp_path: Path, exit_code: int
) -> None:
    """Only an exit that ends the run gives the lease back early: a retry keeps the GPU."""
    suffix = uuid.uuid4().hex[:6]
    settings = make_settings(
        temporal_client,
        tmp_path,
        task_queue=f"tests-early-{suffix}",
        worker_name=f"early-host-{suffix}",
        worker_gpus="0",
        worker_cpus=2,
        worker_memory="4g",
        gpu_device_requests=False,
        fault_pause_at="finish",
        poll_interval_seconds=0.1,
    )
    await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
    engine = create_engine(settings.sqlalchemy_url)
    sessions = create_sessionmaker(engine)
    marker = fault_marker(settings, "finish")
    try:
        async with build_worker(settings, temporal_client) as workers, workers:
            async with api_client(settings) as api:
                response = await api.post(
                    "/jobs",
                    json={
                        "name": f"early-retry-{suffix}",
                        "image": busybox_image,
                        "command": ["sh", "-c", f"exit {exit_code}"],
                        "resources": {"gpus": 1},
                        "max_retries": 1,
                    },
                )
                assert response.status_code == 201, response.text
                job_id = response.json()["job_id"]
                await eventually(paused_at(marker), timeout=60)
                run_id = (await job(api, job_id))["latest_run_id"]
                async with sessions() as session:
                    held = list(
                        await session.scalars(select(GpuLease.gpu).where(GpuLease.run_id == run_id))
                    )
                # Attempt 1 of 2 exited 3: the run retries, so it keeps GPU 0.
                assert held == ["0"]
                marker.unlink()
                # Attempt 2, the last, exits 3 too: now the lease goes before the record.
                await eventually(paused_at(marker), timeout=60)

                async def lease_gone() -> bool:
                    async with sessions() as session:
                        rows = await session.scalars(
                            select(GpuLease).where(GpuLease.run_id == run_id)
                        )
                        return not rows.all()

                await eventually(lease_gone, timeout=30)
                assert (await job(api, job_id))["status"] == "running"
                marker.unlink()
                await wait_for_status(api, job_id, {"failed"}, timeout=60)
    finally:
        marker.unlink(missing_ok=True)
        await engine.dispose()
