"""GPU capacity end to end: a worker with a fake inventory (WORKER_GPUS=0,1) and
GPU_DEVICE_REQUESTS=false, so the leased ids reach busybox through its environment.

Each test runs its own worker on its own task queue (a deployment of its own), so queues of
different tests never meet. A trainer here prints the ids it sees and trains until the test
drops a ``stop`` file in its checkpoint directory.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from core.settings import Settings
from tests.conftest import api_client, eventually, make_settings, unique_name, wait_for_status
from worker import build_worker

TRAINER = (
    'echo "GPUS=$CUDA_VISIBLE_DEVICES NVIDIA=$NVIDIA_VISIBLE_DEVICES" > "$CHECKPOINT_DIR/.seen"; '
    'while [ ! -f "$CHECKPOINT_DIR/stop" ]; do sleep 0.1; done'
)


@pytest.fixture
async def gpu_settings(temporal_client: Client, settings: Settings) -> Settings:
    suffix = uuid.uuid4().hex[:6]
    return make_settings(
        temporal_client,
        settings.data_dir,
        task_queue=f"tests-gpu-{suffix}",
        worker_name=f"gpu-host-{suffix}",
        worker_gpus="0,1",
        worker_cpus=4,
        worker_memory="8g",
        gpu_device_requests=False,
    )


@pytest.fixture
async def gpu_api(
    gpu_settings: Settings, temporal_client: Client, busybox_image: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with build_worker(gpu_settings, temporal_client) as workers, workers:
        async with api_client(gpu_settings) as http:
            yield http


async def create(
    api: httpx.AsyncClient, image: str, resources: dict[str, Any] | None, **extra: Any
) -> str:
    name = unique_name("gpu")
    response = await api.post(
        "/jobs",
        json={
            "name": name,
            "image": image,
            "command": ["sh", "-c", TRAINER],
            "checkpoint_path": f"/checkpoints/{name}",
            "resources": resources,
            "max_retries": 0,
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def stop(settings: Settings, api_job: dict[str, Any]) -> None:
    host_dir = settings.checkpoint_root_dir / api_job["checkpoint_path"].lstrip("/")
    host_dir.mkdir(parents=True, exist_ok=True)
    (host_dir / "stop").write_text("")
    (host_dir / ".seen").unlink(missing_ok=True)


async def job(api: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await api.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def latest_run(api: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    runs = (await api.get(f"/jobs/{job_id}/runs")).json()["runs"]
    assert runs, "no run yet"
    run: dict[str, Any] = runs[0]
    return run


async def seen_gpus(api: httpx.AsyncClient, settings: Settings, job_id: str) -> str:
    """The ids the trainer found in its environment, inside its container."""
    body = await job(api, job_id)
    seen = settings.checkpoint_root_dir / body["checkpoint_path"].lstrip("/") / ".seen"

    async def printed() -> str | None:
        text = seen.read_text().strip() if seen.exists() else ""
        return text or None

    line: str = await eventually(printed, timeout=30)
    return line


async def stop_all(api: httpx.AsyncClient, settings: Settings, job_ids: list[str]) -> None:
    for job_id in job_ids:
        body = await job(api, job_id)
        stop(settings, body)
        if body["status"] == "queued":
            await api.post(f"/jobs/{job_id}/cancel")
    for job_id in job_ids:
        await wait_for_status(api, job_id, {"completed", "failed", "cancelled"}, timeout=60)


async def test_two_gpus_three_jobs_third_queued_until_one_ends(
    gpu_api: httpx.AsyncClient, gpu_settings: Settings, busybox_image: str
) -> None:
    api = gpu_api
    first = await create(api, busybox_image, {"gpus": 1})
    second = await create(api, busybox_image, {"gpus": 1})
    jobs = [first, second]
    try:
        await wait_for_status(api, first, {"running"})
        await wait_for_status(api, second, {"running"})
        seen = {
            await seen_gpus(api, gpu_settings, first),
            await seen_gpus(api, gpu_settings, second),
        }
        assert seen == {"GPUS=0 NVIDIA=0", "GPUS=1 NVIDIA=1"}

        third = await create(api, busybox_image, {"gpus": 1})
        jobs.append(third)
        queued = await wait_for_status(api, third, {"queued"})
        assert "waiting for 1 GPU" in queued["queue_reason"], queued
        assert f"{gpu_settings.worker_name} has 0 of 2 free" in queued["queue_reason"]
        assert queued["queue_position"] == 1
        run = await latest_run(api, third)
        assert run["status"] == "queued" and run["queue_position"] == 1
        # Queued is active: retry and PUT wait for it.
        assert (await api.post(f"/jobs/{third}/retry")).status_code == 409
        assert (await api.put(f"/jobs/{third}", json={"max_retries": 1})).status_code == 409

        workers = (await api.get("/workers")).json()["workers"]
        assert [w["name"] for w in workers] == [gpu_settings.worker_name]
        assert workers[0]["gpus_total"] == 2 and workers[0]["gpus_free"] == 0
        assert len(workers[0]["running_runs"]) == 2

        first_run = await latest_run(api, first)
        stop(gpu_settings, await job(api, first))
        await wait_for_status(api, first, {"completed"})
        await wait_for_status(api, third, {"running"})
        assert (
            await seen_gpus(api, gpu_settings, third)
            == f"GPUS={first_run['gpus'][0]} NVIDIA={first_run['gpus'][0]}"
        )
        third_run = await latest_run(api, third)
        assert third_run["host"] == gpu_settings.worker_name
        assert third_run["gpus"] == first_run["gpus"]
        assert third_run["retry_count"] == 0 and third_run["queue_reason"] is None
    finally:
        await stop_all(api, gpu_settings, jobs)
    workers = (await api.get("/workers")).json()["workers"]
    assert workers[0]["gpus_free"] == 2 and workers[0]["running_runs"] == []


async def test_too_large_job_waits_with_a_reason_and_cpu_jobs_pass_it(
    gpu_api: httpx.AsyncClient, gpu_settings: Settings, busybox_image: str
) -> None:
    api = gpu_api
    busy = [await create(api, busybox_image, {"gpus": 1}) for _ in range(2)]
    jobs = list(busy)
    try:
        for job_id in busy:
            await wait_for_status(api, job_id, {"running"})
        waiting = await create(api, busybox_image, {"gpus": 1})
        huge = await create(api, busybox_image, {"gpus": 4})
        jobs += [waiting, huge]
        body = await wait_for_status(api, huge, {"queued"})
        assert "waiting for 4 GPUs" in body["queue_reason"]
        assert "no registered worker has that much" in body["queue_reason"]
        assert "2 GPUs" in body["queue_reason"]
        await wait_for_status(api, waiting, {"queued"})

        # CPU-only jobs are never held behind the GPU line: with or without a CPU request.
        for resources in (None, {"cpus": 1}):
            cpu_job = await create(api, busybox_image, resources)
            jobs.append(cpu_job)
            await wait_for_status(api, cpu_job, {"running"})
            stop(gpu_settings, await job(api, cpu_job))
            await wait_for_status(api, cpu_job, {"completed"})

        cancelled = await api.post(f"/jobs/{huge}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        done = await wait_for_status(api, huge, {"cancelled"})
        assert done["retry_count"] == 0
        # Deleting the job of a queued run cancels that run.
        assert (await api.delete(f"/jobs/{waiting}")).status_code == 204
        jobs.remove(waiting)
        assert (await api.get(f"/jobs/{waiting}")).status_code == 404
        stats = (await api.get("/stats")).json()
        assert "queued" in stats
    finally:
        await stop_all(api, gpu_settings, jobs)


async def test_priority_orders_the_queue(
    gpu_api: httpx.AsyncClient, gpu_settings: Settings, busybox_image: str
) -> None:
    api = gpu_api
    busy = [await create(api, busybox_image, {"gpus": 1}) for _ in range(2)]
    jobs = list(busy)
    try:
        for job_id in busy:
            await wait_for_status(api, job_id, {"running"})
        low = await create(api, busybox_image, {"gpus": 1})
        jobs.append(low)
        await wait_for_status(api, low, {"queued"})
        high = await create(api, busybox_image, {"gpus": 1}, priority=5)
        jobs.append(high)
        assert (await wait_for_status(api, high, {"queued"}))["priority"] == 5

        async def ordered() -> bool:
            return (await job(api, high))["queue_position"] == 1 and (await job(api, low))[
                "queue_position"
            ] == 2

        await eventually(ordered, timeout=30)
        stop(gpu_settings, await job(api, busy[0]))
        await wait_for_status(api, high, {"running"})
        assert (await job(api, low))["status"] == "queued"
        assert (await job(api, low))["queue_position"] == 1
    finally:
        await stop_all(api, gpu_settings, jobs)


async def test_two_workers_admit_concurrently_without_double_leases(
    gpu_settings: Settings, temporal_client: Client, busybox_image: str
) -> None:
    """Two workers of one deployment, two GPUs each; six one-GPU jobs posted at once."""
    other = gpu_settings.model_copy(update={"worker_name": f"{gpu_settings.worker_name}-b"})
    # A client of its own, as another host's worker has (one client may not run two workers
    # on one task queue).
    other_client = await Client.connect(
        other.temporal_address, data_converter=pydantic_data_converter
    )
    async with (
        build_worker(gpu_settings, temporal_client) as first,
        first,
        build_worker(other, other_client) as second,
        second,
        api_client(gpu_settings) as api,
    ):
        jobs = list(
            await asyncio.gather(*(create(api, busybox_image, {"gpus": 1}) for _ in range(6)))
        )
        try:

            async def placed() -> list[dict[str, Any]] | None:
                bodies = [await job(api, job_id) for job_id in jobs]
                statuses = sorted(body["status"] for body in bodies)
                runs = [await latest_run(api, job_id) for job_id in jobs]
                held = [run for run in runs if run["gpus"]]
                if statuses == ["queued"] * 2 + ["running"] * 4 and len(held) == 4:
                    return held
                return None

            held = await eventually(placed, timeout=60)
            leases = [(run["host"], gpu) for run in held for gpu in run["gpus"]]
            assert sorted(leases) == sorted(
                (host, gpu)
                for host in (gpu_settings.worker_name, other.worker_name)
                for gpu in ("0", "1")
            )
            for run in held:
                seen = await seen_gpus(api, gpu_settings, run["job_id"])
                assert seen == f"GPUS={run['gpus'][0]} NVIDIA={run['gpus'][0]}"
        finally:
            await stop_all(api, gpu_settings, jobs)


async def test_a_failed_run_gives_its_gpu_back(
    gpu_api: httpx.AsyncClient, gpu_settings: Settings, busybox_image: str
) -> None:
    api = gpu_api
    name = unique_name("gpu-fail")
    created = await api.post(
        "/jobs",
        json={
            "name": name,
            "image": busybox_image,
            "command": ["sh", "-c", "exit 3"],
            "resources": {"gpus": 2},
            "max_retries": 1,
        },
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["job_id"]
    failed = await wait_for_status(api, job_id, {"failed"})
    run = await latest_run(api, job_id)

    assert failed["retry_count"] == 1
    # Both attempts ran on the same lease, kept across the retry.
    assert len(run["attempts"]) == 2 and sorted(run["gpus"]) == ["0", "1"]
    workers = (await api.get("/workers")).json()["workers"]
    assert workers[0]["gpus_free"] == 2 and workers[0]["running_runs"] == []
