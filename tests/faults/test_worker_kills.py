"""A worker SIGKILLed in each phase of a run, then restarted: the run completes, trained once.

Pull, start, finish and result are too short to hit from outside: the first worker runs with
the test-only ``FAULT_PAUSE_AT`` and pauses there (heartbeating) until it is killed; its
replacement runs without it. Training is long enough to kill the worker in it directly.
Both workers carry the default WORKER_NAME (the host name), as a restarted worker does, so the
replacement polls the task queue its predecessor's attempts were sent to. A worker that never
comes back is replaced by one with another name once HOST_LOSS_TIMEOUT_SECONDS have passed.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path
from typing import cast

import pytest
from temporalio.client import Client

from activities.fault_points import fault_marker
from core.settings import FaultPoint, Settings
from runtimes.base import LABEL_JOB_ID
from tests.conftest import (
    api_client,
    eventually,
    scheduled_activities,
    start_worker_process,
    unique_name,
    wait_for_status,
)
from tests.faults.test_temporal_outage import containers_of, remove_containers
from workflows.models import PULL_IMAGE, RUN_TRAINING_CONTAINER

TRAIN_SECONDS = 6
# Each start of the trainer leaves a line in a dot file (the checkpoint scan ignores it).
TRAINER = f'echo start >> "$CHECKPOINT_DIR/.starts"; sleep {TRAIN_SECONDS}; echo done'


def start_worker(
    settings: Settings, log: Path, pause_at: FaultPoint | None = None, **extra: str
) -> subprocess.Popen[bytes]:
    if pause_at is not None:
        extra["FAULT_PAUSE_AT"] = pause_at
    return start_worker_process(
        settings, log, RUNTIME="docker", CHECKPOINT_SCAN_SECONDS="0.5", **extra
    )


def kill(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)


@pytest.mark.parametrize("phase", ["pull", "start", "training", "finish", "result"])
async def test_a_worker_killed_mid_phase_costs_nothing(
    settings: Settings, busybox_image: str, tmp_path: Path, phase: str
) -> None:
    local = settings.model_copy(update={"task_queue": unique_name(f"tests-kill-{phase}")})
    point = None if phase == "training" else cast(FaultPoint, phase)
    name = unique_name(f"kill-{phase}")
    checkpoint_path = f"/checkpoints/{name}"
    starts = local.checkpoint_root_dir / checkpoint_path.lstrip("/") / ".starts"
    log = tmp_path / "workers.log"
    first = start_worker(local, log, point)
    workers = [first]
    job_id: str | None = None
    try:
        async with api_client(local) as api:
            created = await api.post(
                "/jobs",
                json={
                    "name": name,
                    "image": busybox_image,
                    "command": ["sh", "-c", TRAINER],
                    "checkpoint_path": checkpoint_path,
                    "max_retries": 2,
                    # A run that asks for no capacity, whose image is at hand, skips the pull:
                    # asking for a CPU makes it placed by a lease, then pulled there.
                    **({"resources": {"cpus": 0.5}} if phase == "pull" else {}),
                },
            )
            assert created.status_code == 201, created.text
            job_id = created.json()["job_id"]

            async def in_phase() -> bool:
                if point is not None:
                    return fault_marker(local, point).exists()
                return starts.exists() and "start" in starts.read_text()

            await eventually(in_phase, timeout=120)
            await asyncio.sleep(1.0)  # heartbeats from inside the phase have reached Temporal
            await asyncio.to_thread(kill, first)
            if point is not None:
                fault_marker(local, point).unlink()
            workers.append(start_worker(local, log))

            done = await wait_for_status(
                api, job_id, {"completed", "failed", "cancelled"}, timeout=240
            )
            leftovers = await asyncio.to_thread(containers_of, LABEL_JOB_ID, job_id)
    finally:
        for worker in workers:
            await asyncio.to_thread(kill, worker)
        if point is not None:
            fault_marker(local, point).unlink(missing_ok=True)
        if job_id is not None:
            await asyncio.to_thread(remove_containers, LABEL_JOB_ID, job_id)

    worker_log = log.read_text(errors="replace")[-4000:]
    assert done["status"] == "completed", (done, worker_log)
    assert done["retry_count"] == 0, "a lost worker must not consume a training retry"
    start_count = starts.read_text().count("start")
    assert start_count == 1, f"the trainer started {start_count} times\n{worker_log}"
    assert leftovers == [], f"containers left behind: {leftovers}"


async def test_an_attempt_whose_worker_never_returns_is_placed_again(
    settings: Settings, temporal_client: Client, busybox_image: str, tmp_path: Path
) -> None:
    """host-a dies for good mid-training; after HOST_LOSS_TIMEOUT_SECONDS host-b takes over.

    Both share this Docker engine, so host-b's pull finds the image and its attempt reattaches
    to the container host-a started: the trainer still runs once.
    """
    local = settings.model_copy(update={"task_queue": unique_name("tests-host-loss")})
    name = unique_name("host-loss")
    checkpoint_path = f"/checkpoints/{name}"
    starts = local.checkpoint_root_dir / checkpoint_path.lstrip("/") / ".starts"
    log = tmp_path / "workers.log"
    # Renewals every second: a host is lost after 5 s, and a worker fences itself after 2.5 s
    # without a renewal (settings refuse a heartbeat as slow as half of either).
    placement = {"HOST_LOSS_TIMEOUT_SECONDS": "5", "WORKER_HEARTBEAT_SECONDS": "1"}
    first = start_worker(local, log, WORKER_NAME="host-a", **placement)
    workers = [first]
    job_id: str | None = None
    try:
        async with api_client(local) as api:
            created = await api.post(
                "/jobs",
                json={
                    "name": name,
                    "image": busybox_image,
                    "command": ["sh", "-c", TRAINER],
                    "checkpoint_path": checkpoint_path,
                    "max_retries": 2,
                },
            )
            assert created.status_code == 201, created.text
            job_id = created.json()["job_id"]

            async def training() -> bool:
                return starts.exists() and "start" in starts.read_text()

            await eventually(training, timeout=120)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(kill, first)
            workers.append(start_worker(local, log, WORKER_NAME="host-b", **placement))

            done = await wait_for_status(
                api, job_id, {"completed", "failed", "cancelled"}, timeout=240
            )
            leftovers = await asyncio.to_thread(containers_of, LABEL_JOB_ID, job_id)
    finally:
        for worker in workers:
            await asyncio.to_thread(kill, worker)
        if job_id is not None:
            await asyncio.to_thread(remove_containers, LABEL_JOB_ID, job_id)

    worker_log = log.read_text(errors="replace")[-4000:]
    assert done["status"] == "completed", (done, worker_log)
    assert done["retry_count"] == 0
    assert starts.read_text().count("start") == 1, worker_log
    assert leftovers == [], f"containers left behind: {leftovers}"
    history = await temporal_client.get_workflow_handle(done["latest_run_id"]).fetch_history()
    placed = [
        (name, queue)
        for name, queue in scheduled_activities(history)
        if name in (PULL_IMAGE, RUN_TRAINING_CONTAINER)
    ]
    # host-a started the run with the image at hand, so its first try went straight to its
    # queue; the try placed again after host-a was lost pulls where it lands.
    assert placed == [
        (RUN_TRAINING_CONTAINER, f"{local.task_queue}-host-a"),
        (PULL_IMAGE, local.task_queue),
        (RUN_TRAINING_CONTAINER, f"{local.task_queue}-host-b"),
    ]
