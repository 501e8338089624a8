"""A partitioned host: its worker is cut off from Temporal and the database, its engine is not.

The two simulated hosts of ``test_two_hosts.py`` (their own ``dockerd`` each, with
``--live-restore``), on PostgreSQL (TEST_POSTGRES_URL), which every worker reaches over TCP.
Each worker reaches Temporal and the database through TCP proxies of the test's own
(``tcp_proxy.py``); the test cuts those of the host its run was placed on. The cut-off worker
must stop its container itself (self-fence) before its lease expires, so that at most one
copy of the run trains: the trainer appends ``start <epoch> <resume>`` and ``stop <epoch>``
lines to a file of the shared checkpoint directory, and a sampler watches both engines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from temporalio.client import Client

from core.settings import Settings
from store.models import utcnow
from tests.conftest import eventually, make_settings, unique_name, wait_for_status
from tests.faults.tcp_proxy import TcpProxy
from tests.faults.test_two_hosts import HOSTS, Cluster, Host, counting_trainer, two_hosts
from tests.store.test_store import postgres_url, reset_schema

WORKER_LOST_SECONDS = 8
# Long enough for a worker whose partition heals after its fence to take its attempt back.
TIMINGS = {
    "WORKER_LOST_SECONDS": str(WORKER_LOST_SECONDS),
    "HOST_LOST_SECONDS": "15",
    "SELF_FENCE_SECONDS": "3",
    "STOP_GRACE_SECONDS": "3",
}


def fenced_trainer(root: str) -> str:
    """``counting_trainer`` that notes its stop (SIGTERM) in the same file as its starts."""
    return (
        f'trap \'echo "stop ${{PLACEMENT_EPOCH:-0}}" >> "{root}/.starts"; exit 143\' TERM\n'
        + counting_trainer(root)
    )


@dataclass
class Partition:
    """The proxies between one worker and Temporal and the database."""

    proxies: dict[str, TcpProxy]

    def cut(self, peers: tuple[str, ...] = ("temporal", "database")) -> None:
        for peer in peers:
            self.proxies[peer].cut()

    def heal(self) -> None:
        for proxy in self.proxies.values():
            proxy.heal()


@dataclass
class PartitionedCluster:
    cluster: Cluster
    partitions: dict[str, Partition]


@dataclass
class Sampler:
    """Samples both engines: which hosts run a container of the job, at what time."""

    cluster: Cluster
    job_id: str
    samples: list[tuple[datetime, set[str]]] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            running = set()
            for host in self.cluster.hosts.values():
                if await asyncio.to_thread(host.containers, self.job_id, running_only=True):
                    running.add(host.name)
            self.samples.append((utcnow(), running))
            await asyncio.sleep(0.1)

    def overlaps(self) -> list[tuple[datetime, set[str]]]:
        return [sample for sample in self.samples if len(sample[1]) > 1]


@pytest.fixture
async def partitioned(
    temporal_client: Client, data_dir: Path, busybox_image: str, tmp_path: Path
) -> AsyncIterator[PartitionedCluster]:
    database = postgres_url()
    await asyncio.to_thread(reset_schema, database)
    local: Settings = make_settings(
        temporal_client,
        data_dir,
        database_url=database,
        task_queue=unique_name("tests-partition"),
        worker_heartbeat_seconds=1.0,
        worker_lost_seconds=float(WORKER_LOST_SECONDS),
    )
    temporal_host, temporal_port = local.temporal_address.rsplit(":", 1)
    url = make_url(database)
    partitions: dict[str, Partition] = {}
    env: dict[str, dict[str, str]] = {}
    try:
        for name in HOSTS:
            temporal = await TcpProxy(temporal_host, int(temporal_port)).start()
            db = await TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
            partitions[name] = Partition({"temporal": temporal, "database": db})
            env[name] = {
                **TIMINGS,
                "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal.port}",
                "DATABASE_URL": url.set(host="127.0.0.1", port=db.port).render_as_string(
                    hide_password=False
                ),
            }
        async with two_hosts(local, busybox_image, tmp_path, env) as cluster:
            yield PartitionedCluster(cluster, partitions)
    finally:
        for partition in partitions.values():
            for proxy in partition.proxies.values():
                await proxy.close()


@contextlib.asynccontextmanager
async def sampling(cluster: Cluster, job_id: str) -> AsyncIterator[Sampler]:
    sampler = Sampler(cluster, job_id)
    task = asyncio.create_task(sampler.run())
    try:
        yield sampler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def training_with_checkpoints(cluster: Cluster, job_id: str) -> dict[str, Any]:
    async def placed() -> dict[str, Any] | None:
        listing = (await cluster.api.get(f"/jobs/{job_id}/checkpoints")).json()
        run = await cluster.run(job_id)
        return run if len(listing["checkpoints"]) >= 2 and run.get("host") else None

    found: dict[str, Any] = await eventually(placed, timeout=180)
    return found


async def worker_row(cluster: Cluster, name: str) -> dict[str, Any]:
    workers = (await cluster.api.get("/workers")).json()["workers"]
    [row] = [w for w in workers if w["name"] == name]
    return dict(row)


async def cut_and_wait_for_fence(
    setup: PartitionedCluster,
    job_id: str,
    host: Host,
    peers: tuple[str, ...] = ("temporal", "database"),
) -> tuple[datetime, datetime]:
    """Cut ``host`` off ``peers``; when its container is seen gone, when its lease expires."""
    setup.partitions[host.name].cut(peers)

    async def gone() -> datetime | None:
        running = await asyncio.to_thread(host.containers, job_id, running_only=True)
        return None if running else utcnow()

    seen_gone: datetime = await eventually(gone, timeout=120, interval=0.1)
    # The worker has not renewed since the cut: its registration is as it last wrote it.
    last_seen = datetime.fromisoformat((await worker_row(setup.cluster, host.name))["last_seen_at"])
    return seen_gone, last_seen + timedelta(seconds=WORKER_LOST_SECONDS)


def lines(root: Path) -> list[str]:
    return (root / ".starts").read_text().splitlines()


async def test_a_partitioned_worker_stops_its_copy_before_the_run_is_placed_again(
    partitioned: PartitionedCluster, busybox_image: str
) -> None:
    cluster = partitioned.cluster
    name = unique_name("partition")
    root = cluster.root(name)
    mount = f"/checkpoints/{name}"
    job_id = await cluster.create(busybox_image, fenced_trainer(mount), name, max_retries=2)
    first = await training_with_checkpoints(cluster, job_id)
    cut = cluster.hosts[first["host"]]
    [other] = [host for host in cluster.hosts.values() if host is not cut]

    async with sampling(cluster, job_id) as sampler:
        seen_gone, lease_expiry = await cut_and_wait_for_fence(partitioned, job_id, cut)
        at_fence = {path.name for path in root.glob("step-*")}

        async def placed_again() -> dict[str, Any] | None:
            run = await cluster.run(job_id)
            return run if run.get("host") == other.name and len(lines(root)) >= 3 else None

        replaced = await eventually(placed_again, timeout=300)
        before_heal = lines(root)

        # The partition heals: the returning worker renews and must not start its copy again.
        partitioned.partitions[cut.name].heal()

        async def back() -> bool:
            return bool((await worker_row(cluster, cut.name))["alive"])

        await eventually(back, timeout=120)
        await asyncio.sleep(3)  # a few renewals and polls of its own queue later
        on_cut_host = await asyncio.to_thread(cut.containers, job_id)

        (root / "stop").write_text("")
        done = await wait_for_status(cluster.api, job_id, {"completed", "failed"}, timeout=120)
    leftovers = {host.name: host.containers(job_id) for host in cluster.hosts.values()}
    logs = cluster.worker_logs()

    assert seen_gone < lease_expiry, (seen_gone, lease_expiry, logs)
    # One copy at a time: the first copy's stop is written before the second copy's start.
    assert before_heal[:2] == ["start 1 -", "stop 1"], (before_heal, logs)
    epoch, resumed = before_heal[2].split()[1:]
    assert epoch == "2" and resumed.rsplit("/", 1)[1] in at_fence, (before_heal, at_fence)
    assert sampler.overlaps() == [], sampler.overlaps()
    assert replaced["status"] == "running" and replaced["retry_count"] == 0, replaced
    assert on_cut_host == [], "the healed worker restarted its old copy"
    assert lines(root) == before_heal, lines(root)
    assert done["status"] == "completed", (done, logs)
    assert done["retry_count"] == 0, "a partition must not consume a training retry"
    assert (await cluster.run(job_id))["host"] == other.name
    assert leftovers == {host: [] for host in HOSTS}, leftovers


@pytest.mark.parametrize(
    "peers", [("temporal", "database"), ("database",), ("temporal",)], ids=lambda p: "+".join(p)
)
async def test_a_partition_healed_in_time_restarts_the_copy_on_its_host_from_its_checkpoint(
    partitioned: PartitionedCluster, busybox_image: str, peers: tuple[str, ...]
) -> None:
    """Cut off from both, or from one of them (Temporal still answers: the attempt's retries
    reach the worker, which starts nothing while fenced), then back in time."""
    cluster = partitioned.cluster
    name = unique_name("partition-heal")
    root = cluster.root(name)
    mount = f"/checkpoints/{name}"
    job_id = await cluster.create(busybox_image, fenced_trainer(mount), name, max_retries=2)
    first = await training_with_checkpoints(cluster, job_id)
    cut = cluster.hosts[first["host"]]

    async with sampling(cluster, job_id) as sampler:
        seen_gone, lease_expiry = await cut_and_wait_for_fence(partitioned, job_id, cut, peers)
        at_fence = {path.name for path in root.glob("step-*")}
        await asyncio.sleep(2)  # fenced a while: nothing starts again meanwhile
        fenced_lines = lines(root)
        # Back before HOST_LOST_SECONDS: nobody placed the run again.
        partitioned.partitions[cut.name].heal()

        async def restarted() -> bool:
            return len(lines(root)) >= 3

        await eventually(restarted, timeout=120)
        after_heal = await cluster.run(job_id)
        (root / "stop").write_text("")
        done = await wait_for_status(cluster.api, job_id, {"completed", "failed"}, timeout=120)
    leftovers = {host.name: host.containers(job_id) for host in cluster.hosts.values()}
    logs = cluster.worker_logs()

    assert seen_gone < lease_expiry, (seen_gone, lease_expiry, logs)
    started = lines(root)
    assert fenced_lines == ["start 1 -", "stop 1"], (fenced_lines, logs)
    assert started[:2] == ["start 1 -", "stop 1"], (started, logs)
    # The same placement (epoch 1, same host), resumed from what the first copy wrote.
    epoch, resumed = started[2].split()[1:]
    assert epoch == "1" and resumed.rsplit("/", 1)[1] in at_fence, (started, at_fence, logs)
    assert len(started) == 3, started
    assert sampler.overlaps() == [], sampler.overlaps()
    assert after_heal["host"] == cut.name, after_heal
    assert done["status"] == "completed", (done, logs)
    assert done["retry_count"] == 0, "a partition must not consume a training retry"
    assert not list(root.glob(".epoch-*")), "the run was placed again"
    assert leftovers == {host: [] for host in HOSTS}, leftovers
