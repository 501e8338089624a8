"""Workers lost during one attempt, more often than INFRA_MAX_ATTEMPTS: the run goes on.

Each SIGKILL of the worker shows up in Temporal as a heartbeat timeout of the attempt
activity; the next worker reattaches to the container. A deploy per hour during a week-long
attempt must not add up to a failed run: worker losses are never counted.
"""

from __future__ import annotations

import asyncio
import subprocess

import docker
import pytest
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from core.settings import Settings
from runtimes.base import LABEL_JOB_ID
from tests.conftest import (
    api_client,
    eventually,
    start_worker_process,
    unique_name,
    wait_for_status,
)
from workflows.models import RUN_TRAINING_CONTAINER

TASK_QUEUE = "tests-worker-loss"
INFRA_MAX_ATTEMPTS = 2
KILLS = INFRA_MAX_ATTEMPTS + 1
# Trains until the test drops a file next to its checkpoints.
TRAINER = (
    'echo start >> "$CHECKPOINT_DIR/.starts"; '
    'while [ ! -f "$CHECKPOINT_DIR/.release" ]; do sleep 0.2; done; echo finished'
)


def start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    return start_worker_process(
        settings, TASK_QUEUE=TASK_QUEUE, INFRA_MAX_ATTEMPTS=str(INFRA_MAX_ATTEMPTS)
    )


async def attempt_is_followed(handle: WorkflowHandle[object, object], attempt: int) -> bool:
    """Whether activity attempt ``attempt`` runs and has heartbeated since it started."""
    description = await handle.describe()
    if description.status != WorkflowExecutionStatus.RUNNING:
        pytest.fail(f"the run ended ({description.status}) while its worker was being killed")
    for pending in description.raw_description.pending_activities:
        if (
            pending.activity_type.name == RUN_TRAINING_CONTAINER
            and pending.attempt == attempt
            and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            and pending.last_heartbeat_time.ToDatetime() > pending.last_started_time.ToDatetime()
        ):
            return True
    return False


def remove_containers(job_id: str) -> None:
    client = docker.from_env()
    try:
        for name in containers_of(job_id):
            client.api.remove_container(name, force=True)
    finally:
        client.close()


def containers_of(job_id: str) -> list[str]:
    client = docker.from_env()
    try:
        rows = client.api.containers(all=True, filters={"label": f"{LABEL_JOB_ID}={job_id}"})
        return [row["Names"][0].lstrip("/") for row in rows]
    finally:
        client.close()


async def test_more_worker_losses_than_infra_attempts_do_not_fail_the_run(
    settings: Settings, temporal_client: Client, busybox_image: str
) -> None:
    local = settings.model_copy(update={"task_queue": TASK_QUEUE})
    name = unique_name("worker-loss")
    checkpoints = settings.checkpoint_root_dir / "checkpoints" / name
    workers = [start_worker(local)]
    job_id: str | None = None
    try:
        async with api_client(local) as api:
            created = await api.post(
                "/jobs",
                json={
                    "name": name,
                    "image": busybox_image,
                    "command": ["sh", "-c", TRAINER],
                    "checkpoint_path": f"/checkpoints/{name}",
                    "max_retries": 0,
                },
            )
            assert created.status_code == 201, created.text
            job_id = created.json()["job_id"]
            running = await wait_for_status(api, job_id, {"running"}, timeout=120)
            handle = temporal_client.get_workflow_handle(running["latest_run_id"])

            for attempt in range(1, KILLS + 1):
                await eventually(lambda a=attempt: attempt_is_followed(handle, a), timeout=120)
                workers[-1].kill()
                await asyncio.to_thread(workers[-1].wait, 30)
                workers.append(start_worker(local))
            await eventually(lambda: attempt_is_followed(handle, KILLS + 1), timeout=120)

            (checkpoints / ".release").touch()
            done = await wait_for_status(api, job_id, {"completed", "failed"}, timeout=120)
            leftovers = await asyncio.to_thread(containers_of, job_id)
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
        if job_id is not None:  # a failed run leaves its trainer waiting for the release
            (checkpoints / ".release").touch()
            await asyncio.to_thread(remove_containers, job_id)

    assert done["status"] == "completed", done
    assert done["retry_count"] == 0
    assert (checkpoints / ".starts").read_text().count("start") == 1
    assert leftovers == [], f"containers left behind: {leftovers}"
