"""Two hosts on one machine: two Docker engines of the test's own, each with its own worker.

Each simulated host is a ``dockerd`` with its own socket, data root, exec root, pid file and
bridge, started with ``--live-restore`` (its containers outlive a frozen engine, as on a host
that drops off the network), and a ``python -m worker`` subprocess pointed at it
(``DOCKER_HOST``, ``WORKER_NAME``, two fake GPUs, ``GPU_DEVICE_REQUESTS=false``). The hosts
share Temporal, the database and the checkpoint root (``DATA_DIR``), as a real deployment
shares its checkpoint storage. Losing a host is SIGSTOP of its engine and its worker; SIGCONT
brings it back, with its stale container still training.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import Settings
from runtimes.base import LABEL_JOB_ID
from tests.conftest import (
    api_client,
    eventually,
    start_worker_process,
    unique_name,
    wait_for_status,
)
from tests.faults.second_engine import SecondEngine

HOSTS = ("host-a", "host-b")
TIMINGS = {
    "WORKER_HEARTBEAT_SECONDS": "1",
    "WORKER_LOST_SECONDS": "5",
    "HOST_LOST_SECONDS": "6",
    "QUEUE_POLL_SECONDS": "2",
    "RECONCILE_INTERVAL_SECONDS": "2",
    "CHECKPOINT_SCAN_SECONDS": "0.5",
}
# Prints the GPU ids it sees and trains until the test drops a `stop` file.
WAITING_TRAINER = (
    'echo "$CUDA_VISIBLE_DEVICES" > "$CHECKPOINT_DIR/.seen"; '
    'while [ ! -f "$CHECKPOINT_DIR/stop" ]; do sleep 0.2; done'
)


def counting_trainer(root: str) -> str:
    """A checkpoint a second (`step-<n>` holding n) in CHECKPOINT_DIR, resumed from
    RESUME_FROM; each start logged with its epoch and resume point in the job's root."""
    return f"""
echo "start ${{PLACEMENT_EPOCH:-0}} ${{RESUME_FROM:--}}" >> "{root}/.starts"
i=0
if [ -n "$RESUME_FROM" ]; then i=$(cat "$RESUME_FROM"); fi
while [ ! -f "{root}/stop" ]; do
  i=$((i+1)); echo $i > "$CHECKPOINT_DIR/.next"
  mv "$CHECKPOINT_DIR/.next" "$CHECKPOINT_DIR/step-$i"
  sleep 1
done
"""


@dataclass
class Host:
    name: str
    engine: SecondEngine
    log: Path
    env: dict[str, str]
    worker: subprocess.Popen[bytes] | None = None

    def start_worker(self, settings: Settings) -> None:
        self.worker = start_worker_process(settings, self.log, **self.env)

    def signal_worker(self, sig: signal.Signals) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(sig)

    def kill_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGCONT)
            self.worker.kill()
            self.worker.wait(30)

    def containers(self, job_id: str, *, running_only: bool = False) -> list[str]:
        client = self.engine.client()
        try:
            rows = client.api.containers(
                all=not running_only, filters={"label": f"{LABEL_JOB_ID}={job_id}"}
            )
            return [row["Names"][0].lstrip("/") for row in rows]
        finally:
            client.close()

    def remove_containers(self, job_ids: list[str]) -> None:
        client = self.engine.client()
        try:
            for job_id in job_ids:
                for row in client.api.containers(
                    all=True, filters={"label": f"{LABEL_JOB_ID}={job_id}"}
                ):
                    with contextlib.suppress(Exception):
                        client.api.remove_container(row["Id"], force=True)
        finally:
            client.close()


@dataclass
class Cluster:
    settings: Settings
    hosts: dict[str, Host]
    api: httpx.AsyncClient
    job_ids: list[str]

    async def create(self, image: str, command: str, name: str, **fields: Any) -> str:
        response = await self.api.post(
            "/jobs",
            json={
                "name": name,
                "image": image,
                "command": ["sh", "-c", command],
                "checkpoint_path": f"/checkpoints/{name}",
                "resources": {"gpus": 1},
                **fields,
            },
        )
        assert response.status_code == 201, response.text
        job_id: str = response.json()["job_id"]
        self.job_ids.append(job_id)
        return job_id

    async def run(self, job_id: str) -> dict[str, Any]:
        runs = (await self.api.get(f"/jobs/{job_id}/runs")).json()["runs"]
        return runs[0] if runs else {}

    def root(self, name: str) -> Path:
        return self.settings.checkpoint_root_dir / "checkpoints" / name

    def worker_logs(self) -> str:
        return "\n".join(
            f"--- {host.name}\n{host.log.read_text(errors='replace')[-3000:]}"
            for host in self.hosts.values()
            if host.log.exists()
        )


@pytest.fixture
async def cluster(settings: Settings, busybox_image: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    # The API judges liveness (GET /workers) with the workers' timings.
    local = settings.model_copy(
        update={
            "task_queue": unique_name("tests-two-hosts"),
            "worker_heartbeat_seconds": float(TIMINGS["WORKER_HEARTBEAT_SECONDS"]),
            "worker_lost_seconds": float(TIMINGS["WORKER_LOST_SECONDS"]),
        }
    )
    async with two_hosts(local, busybox_image, tmp_path) as running:
        yield running


@contextlib.asynccontextmanager
async def two_hosts(
    local: Settings,
    busybox_image: str,
    tmp_path: Path,
    env: Mapping[str, Mapping[str, str]] | None = None,
) -> AsyncIterator[Cluster]:
    """Both hosts' engines and workers, and an API, on ``local``'s database and queue.

    ``env`` adds or overrides variables of a host's worker (by host name) over TIMINGS.
    """
    hosts: dict[str, Host] = {}
    job_ids: list[str] = []
    try:
        for name in HOSTS:
            engine = SecondEngine(live_restore=True)
            hosts[name] = Host(
                name,
                engine,
                tmp_path / f"{name}.log",
                {
                    "RUNTIME": "docker",
                    "DOCKER_HOST": engine.url,
                    "WORKER_NAME": name,
                    "WORKER_GPUS": "0,1",
                    "GPU_DEVICE_REQUESTS": "false",
                    **TIMINGS,
                    **(env or {}).get(name, {}),
                },
            )
            await asyncio.to_thread(engine.start)
            await asyncio.to_thread(engine.load_image, busybox_image)
        for host in hosts.values():
            host.start_worker(local)
        async with api_client(local) as api:

            async def both_registered() -> bool:
                workers = (await api.get("/workers")).json()["workers"]
                return {w["name"] for w in workers if w["alive"]} >= set(HOSTS)

            await eventually(both_registered, timeout=60)
            yield Cluster(local, hosts, api, job_ids)
            for job_id in job_ids:
                with contextlib.suppress(Exception):
                    await api.post(f"/jobs/{job_id}/cancel")
    finally:
        for host in hosts.values():
            host.engine.thaw()
            await asyncio.to_thread(host.kill_worker)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(host.remove_containers, job_ids)
            await asyncio.to_thread(host.engine.cleanup)


async def test_four_one_gpu_jobs_spread_over_two_hosts_and_a_fifth_waits(
    cluster: Cluster, busybox_image: str
) -> None:
    names = [unique_name("spread") for _ in range(5)]
    job_ids = [
        await cluster.create(busybox_image, WAITING_TRAINER, name, max_retries=0)
        for name in names[:4]
    ]

    async def all_training() -> list[dict[str, Any]] | None:
        runs = [await cluster.run(job_id) for job_id in job_ids]
        seen = [(cluster.root(name) / ".seen").exists() for name in names[:4]]
        return runs if all(seen) and all(r.get("status") == "running" for r in runs) else None

    runs = await eventually(all_training, timeout=180)
    placed = [(run["host"], gpu) for run in runs for gpu in run["gpus"]]
    assert sorted(placed) == [(h, g) for h in HOSTS for g in ("0", "1")], placed
    for name, run in zip(names, runs, strict=False):
        # The container saw exactly the GPU leased for it, on the host that leased it.
        assert (cluster.root(name) / ".seen").read_text().strip() == run["gpus"][0]
    for host in cluster.hosts.values():
        here = [
            job_id for job_id, run in zip(job_ids, runs, strict=True) if run["host"] == host.name
        ]
        assert len(here) == 2
        for job_id in here:
            assert len(host.containers(job_id, running_only=True)) == 1

    fifth = await cluster.create(busybox_image, WAITING_TRAINER, names[4], max_retries=0)
    queued = await wait_for_status(cluster.api, fifth, {"queued"}, timeout=60)
    reason = (await cluster.run(fifth))["queue_reason"]
    assert "waiting for 1 GPU" in reason and "host-a has 0 of 2 free" in reason, queued

    (cluster.root(names[0]) / "stop").write_text("")
    first = await wait_for_status(cluster.api, job_ids[0], {"completed", "failed"}, timeout=120)
    assert first["status"] == "completed"

    async def fifth_training() -> dict[str, Any] | None:
        run = await cluster.run(fifth)
        seen = (cluster.root(names[4]) / ".seen").exists()
        return run if seen and run.get("status") == "running" else None

    run = await eventually(fifth_training, timeout=120)
    # It took the GPU the first run gave back.
    assert (run["host"], run["gpus"]) == (runs[0]["host"], runs[0]["gpus"])
    for name in names[1:]:
        (cluster.root(name) / "stop").write_text("")
    for job_id in [*job_ids[1:], fifth]:
        done = await wait_for_status(cluster.api, job_id, {"completed", "failed"}, timeout=120)
        assert done["status"] == "completed", done


async def test_a_lost_host_has_its_run_placed_again_and_its_stale_copy_fenced(
    cluster: Cluster, busybox_image: str
) -> None:
    name = unique_name("host-lost")
    root = cluster.root(name)
    mount = f"/checkpoints/{name}"
    job_id = await cluster.create(busybox_image, counting_trainer(mount), name, max_retries=2)

    async def checkpoints() -> list[dict[str, Any]]:
        listing = (await cluster.api.get(f"/jobs/{job_id}/checkpoints")).json()
        found: list[dict[str, Any]] = listing["checkpoints"]
        return found

    async def two_recorded() -> bool:
        return len(await checkpoints()) >= 2

    await eventually(two_recorded, timeout=180)
    first = await cluster.run(job_id)
    lost = cluster.hosts[first["host"]]
    [other] = [host for host in cluster.hosts.values() if host is not lost]

    # The host drops off: its engine and worker freeze, its container trains on.
    lost.engine.freeze()
    lost.signal_worker(signal.SIGSTOP)
    at_freeze = {path.name for path in root.glob("step-*")}

    async def placed_again() -> dict[str, Any] | None:
        run = await cluster.run(job_id)
        starts = (root / ".starts").read_text().splitlines()
        return run if run.get("host") == other.name and len(starts) >= 2 else None

    replaced = await eventually(placed_again, timeout=300)
    assert replaced["status"] == "running" and replaced["retry_count"] == 0, replaced
    starts = (root / ".starts").read_text().splitlines()
    assert starts[0] == "start 1 -", starts
    epoch, resumed = starts[1].split()[1:]
    assert epoch == "2" and resumed.startswith(f"{mount}/step-"), starts
    # It resumed from a checkpoint the first copy wrote before the host was lost.
    assert resumed.rsplit("/", 1)[1] in at_freeze, (resumed, at_freeze)

    # The host comes back: its worker stops the stale container before it counts as alive
    # again, so before any run can be placed on it.
    async def alive(host: Host) -> bool:
        workers = (await cluster.api.get("/workers")).json()["workers"]
        return any(w["name"] == host.name and w["alive"] for w in workers)

    assert not await alive(lost)
    lost.engine.thaw()
    lost.signal_worker(signal.SIGCONT)
    await eventually(lambda: alive(lost), timeout=90)
    still_running = await asyncio.to_thread(lost.containers, job_id, running_only=True)
    assert still_running == [], "the returning host took work with its stale copy running"
    after_fence = {path.name for path in root.glob("step-*")}
    assert after_fence - at_freeze, "the stale copy wrote nothing while its host was lost"
    await asyncio.sleep(3)  # the returning worker's scans would have recorded by now

    (root / "stop").write_text("")
    done = await wait_for_status(cluster.api, job_id, {"completed", "failed"}, timeout=120)
    recorded = [c["path"] for c in await checkpoints()]
    leftovers = {host.name: host.containers(job_id) for host in cluster.hosts.values()}
    logs = cluster.worker_logs()

    assert done["status"] == "completed", (done, logs)
    assert done["retry_count"] == 0, "a lost host must not consume a training retry"
    # Nothing the stale copy wrote after the fence was recorded: every file of the job's own
    # directory recorded existed when the host froze; the current copy's are in .epoch-2/.
    in_root = {path for path in recorded if "/" not in path}
    assert in_root <= at_freeze, (in_root - at_freeze, logs)
    assert any(path.startswith(".epoch-2/step-") for path in recorded), recorded
    assert (root / ".starts").read_text().count("start") == 2
    assert leftovers == {h: [] for h in HOSTS}, leftovers


async def test_a_worker_killed_mid_run_reattaches_on_its_own_host(
    cluster: Cluster, busybox_image: str
) -> None:
    name = unique_name("host-kill")
    root = cluster.root(name)
    mount = f"/checkpoints/{name}"
    job_id = await cluster.create(busybox_image, counting_trainer(mount), name, max_retries=2)

    async def training() -> bool:
        return (root / ".starts").exists() and (await cluster.run(job_id)).get("host") is not None

    await eventually(training, timeout=180)
    await asyncio.sleep(1.0)  # heartbeats from inside the attempt have reached Temporal
    placed = await cluster.run(job_id)
    host = cluster.hosts[placed["host"]]
    [other] = [h for h in cluster.hosts.values() if h is not host]
    await asyncio.to_thread(host.kill_worker)
    await asyncio.sleep(0.5)  # back well within HOST_LOST_SECONDS
    host.start_worker(cluster.settings)

    async def followed_again() -> bool:
        listing = (await cluster.api.get(f"/jobs/{job_id}/checkpoints")).json()
        return len(listing["checkpoints"]) >= 4

    await eventually(followed_again, timeout=120)
    during = await asyncio.to_thread(host.containers, job_id)
    (root / "stop").write_text("")
    done = await wait_for_status(cluster.api, job_id, {"completed", "failed"}, timeout=120)
    after = await cluster.run(job_id)
    leftovers = {h.name: h.containers(job_id) for h in cluster.hosts.values()}

    assert done["status"] == "completed", (done, cluster.worker_logs())
    assert done["retry_count"] == 0
    assert after["host"] == host.name, "a restarted worker's attempt stays on its host"
    assert len(during) == 1, during
    assert (root / ".starts").read_text().splitlines() == ["start 1 -"]
    assert not list(root.glob(".epoch-*")), "the run was placed again"
    assert leftovers == {h: [] for h in HOSTS} and other.name in leftovers
