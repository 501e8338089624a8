"""Restart survival: a worker killed mid-run, and a Temporal dev server restarted on its file."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from core.settings import Settings
from jobs.temporal import SEARCH_ATTRIBUTES
from runtimes.base import LABEL_JOB_ID, ContainerRuntime
from runtimes.docker import DockerRuntime
from runtimes.process import ProcessRuntime
from tests.conftest import (
    TEMPORAL_CLI,
    api_client,
    make_settings,
    start_worker_process,
    unique_name,
    wait_for_status,
)

TASK_QUEUE = "tests-restart"


def start_worker(settings: Settings, runtime: str) -> subprocess.Popen[bytes]:
    return start_worker_process(settings, RUNTIME=runtime, TASK_QUEUE=TASK_QUEUE)


async def count_units(
    runtime: str, settings: Settings, job_id: str, peak: list[int], stop: asyncio.Event
) -> None:
    """Sample how many containers (or processes) of the job run at once, until told to stop."""
    units: ContainerRuntime = (
        ProcessRuntime(settings.data_dir / "process-runtime")
        if runtime == "process"
        else DockerRuntime()
    )
    while not stop.is_set():
        running = [
            name
            for name, labels, alive in await units.list_units()
            if alive and labels.get(LABEL_JOB_ID) == job_id
        ]
        peak[0] = max(peak[0], len(running))
        await asyncio.sleep(0.2)


@pytest.mark.parametrize(
    ("runtime", "how"),
    [
        ("docker", signal.SIGKILL),
        ("docker", signal.SIGTERM),
        ("process", signal.SIGKILL),
    ],
    ids=["docker-sigkill", "docker-sigterm", "process-sigkill"],
)
async def test_run_survives_its_worker_dying(
    settings: Settings, busybox_image: str, runtime: str, how: signal.Signals
) -> None:
    restart_settings = settings.model_copy(update={"task_queue": TASK_QUEUE})
    worker = start_worker(restart_settings, runtime)
    shell = ["/usr/bin/busybox", "sh"] if runtime == "process" else ["sh"]
    replacement: subprocess.Popen[bytes] | None = None
    peak, stop = [0], asyncio.Event()
    try:
        async with api_client(restart_settings) as api:
            created = await api.post(
                "/jobs",
                json={
                    "name": unique_name("restart"),
                    "image": busybox_image,
                    "command": [*shell, "-c", "echo started; sleep 6; echo finished"],
                    "max_retries": 0,
                },
            )
            assert created.status_code == 201
            job_id = created.json()["job_id"]
            sampler = asyncio.create_task(
                count_units(runtime, restart_settings, job_id, peak, stop)
            )
            await wait_for_status(api, job_id, {"running"})
            await asyncio.sleep(1.5)  # the container is up and heartbeating

            worker.send_signal(how)
            await asyncio.to_thread(worker.wait, 20)
            replacement = start_worker(restart_settings, runtime)

            done = await wait_for_status(api, job_id, {"completed", "failed"}, timeout=90)
            stop.set()
            await sampler
    finally:
        for process in (worker, replacement):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    assert done["status"] == "completed", done
    assert done["retry_count"] == 0, "a worker restart must not consume a training retry"
    assert peak[0] == 1, f"{peak[0]} units of one run ran at once"
    logs = list((settings.log_dir / job_id).glob("*/attempt-*.log"))
    assert [p.name for p in logs] == ["attempt-1.log"]
    output = logs[0].read_text()
    assert output.count("started") == 1 and "finished" in output


async def test_jobs_and_schedules_survive_a_server_restart(
    settings: Settings, tmp_path: Path
) -> None:
    """`make run` again keeps every job: Temporal's file and SQL both persist."""
    database = tmp_path / "temporal.db"

    async def server() -> WorkflowEnvironment:
        return await WorkflowEnvironment.start_local(
            dev_server_existing_path=TEMPORAL_CLI,
            dev_server_database_filename=str(database),
            search_attributes=SEARCH_ATTRIBUTES,
            data_converter=pydantic_data_converter,
            dev_server_log_level="error",
        )

    env = await server()
    local = make_settings(env.client, tmp_path, task_queue="tests-persist")
    from store.migrate import upgrade

    await asyncio.to_thread(upgrade, local.sqlalchemy_url)
    async with api_client(local) as api:
        created = await api.post(
            "/jobs",
            json={
                "name": "persisted",
                "image": "trainer:1",
                "command": ["python", "train.py"],
                "schedule": "0 2 * * *",
            },
        )
        job_id = created.json()["job_id"]
    await env.shutdown()

    env = await server()
    try:
        local = make_settings(env.client, tmp_path, task_queue="tests-persist")
        async with api_client(local) as api:
            job = await api.get(f"/jobs/{job_id}")
            assert job.status_code == 200 and job.json()["name"] == "persisted"
        description = await env.client.get_schedule_handle(job_id).describe()
        assert description.info.next_action_times[0].hour == 2
        await env.client.get_schedule_handle(job_id).delete()
    finally:
        await env.shutdown()
