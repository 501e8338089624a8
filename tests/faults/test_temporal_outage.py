"""A Temporal outage longer than the heartbeat timeout neither kills nor repeats the trainer.

The dev server is paused (SIGSTOP) while the container trains: heartbeats fail, the server
times the activity out when it wakes up and retries it. The retry must reattach to the
container that kept running, not start the trainer a second time.

The suite's Temporal server is shared by every test, so this one starts its own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import pytest
from temporalio.testing import WorkflowEnvironment

from runtimes.base import LABEL_JOB_ID, LABEL_RUN_ID
from store.migrate import upgrade
from tests.conftest import (
    api_client,
    eventually,
    make_settings,
    start_dev_server,
    unique_name,
    wait_for_status,
)
from worker import build_worker

HEARTBEAT_TIMEOUT = 3.0
# At least three heartbeat timeouts, so the server has certainly given up on the attempt.
OUTAGE_SECONDS = 4 * HEARTBEAT_TIMEOUT
TRAIN_SECONDS = 25


@pytest.fixture
async def own_temporal() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()


def dev_server_pid(port: str) -> int:
    """The pid of the ``temporal server start-dev`` listening on ``port``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        words = [word.decode(errors="replace") for word in argv if word]
        if words and Path(words[0]).name == "temporal" and "start-dev" in words and port in words:
            found.append(int(entry.name))
    assert len(found) == 1, f"expected one dev server on port {port}, found {found}"
    return found[0]


def containers_of(label: str, value: str) -> list[str]:
    """Names of the containers, running or not, whose ``label`` is ``value`` (docker ps -a)."""
    client = docker.from_env()
    try:
        rows = client.api.containers(all=True, filters={"label": f"{label}={value}"})
        return [row["Names"][0].lstrip("/") for row in rows]
    finally:
        client.close()


def remove_containers(label: str, value: str) -> None:
    client = docker.from_env()
    try:
        for name in containers_of(label, value):
            client.api.remove_container(name, force=True)
    finally:
        client.close()


async def test_trainer_survives_a_temporal_outage(
    own_temporal: WorkflowEnvironment, busybox_image: str
) -> None:
    client = own_temporal.client
    port = client.service_client.config.target_host.rsplit(":", 1)[1]
    pid = dev_server_pid(port)
    data_dir = Path(tempfile.mkdtemp(prefix="orchestrator-outage-"))
    settings = make_settings(
        client,
        data_dir,
        task_queue="tests-temporal-outage",
        heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT,
        poll_interval_seconds=0.5,
    )
    await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
    name = unique_name("outage")
    checkpoint_path = f"/checkpoints/{name}"
    # A dot file: the checkpoint scan ignores it.
    starts = settings.checkpoint_root_dir / checkpoint_path.lstrip("/") / ".starts"
    paused = False
    job_id: str | None = None
    try:
        async with build_worker(settings, client) as worker, worker:
            async with api_client(settings) as api:
                created = await api.post(
                    "/jobs",
                    json={
                        "name": name,
                        "image": busybox_image,
                        "command": [
                            "sh",
                            "-c",
                            f'echo start >> "$CHECKPOINT_DIR/.starts"; sleep {TRAIN_SECONDS}',
                        ],
                        "checkpoint_path": checkpoint_path,
                        "max_retries": 1,
                    },
                )
                assert created.status_code == 201, created.text
                job_id = created.json()["job_id"]

                async def trainer_started() -> bool:
                    return starts.exists() and starts.read_text().count("start") >= 1

                await eventually(trainer_started, timeout=90)
                await asyncio.sleep(1.0)  # heartbeating from the wait loop

                os.kill(pid, signal.SIGSTOP)
                paused = True
                await asyncio.sleep(OUTAGE_SECONDS)
                os.kill(pid, signal.SIGCONT)
                paused = False

                done = await wait_for_status(
                    api, job_id, {"completed", "failed", "cancelled"}, timeout=180
                )
                run_id = done["latest_run_id"]
                start_count = starts.read_text().count("start")
                leftovers = await asyncio.to_thread(containers_of, LABEL_RUN_ID, run_id)
    finally:
        if paused:
            os.kill(pid, signal.SIGCONT)
        if job_id is not None:
            await asyncio.to_thread(remove_containers, LABEL_JOB_ID, job_id)
        await asyncio.to_thread(shutil.rmtree, data_dir, True)

    assert done["status"] == "completed", done
    assert done["retry_count"] == 0, "an outage of Temporal must not consume a training retry"
    assert start_count == 1, f"the trainer started {start_count} times"
    assert leftovers == [], f"containers left behind: {leftovers}"
