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
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

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
from workflows.models import ACQUIRE_CAPACITY, HOST_LOST_SIGNAL, RUN_TRAINING_CONTAINER

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


def placement_path(events: Sequence[HistoryEvent]) -> dict[str, Any]:
    """Where in a run's history (event indexes) it was placed, told its host was lost, and
    cancelled or timed out its first attempt activity."""
    acquires: list[int] = []
    lost_signals: list[tuple[int, int]] = []
    attempt_id: int | None = None
    cancel_requested: int | None = None
    timeouts: list[int] = []
    for index, event in enumerate(events):
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            if name == ACQUIRE_CAPACITY:
                acquires.append(index)
            elif name == RUN_TRAINING_CONTAINER and attempt_id is None:
                attempt_id = event.event_id
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signalled = event.workflow_execution_signaled_event_attributes
            if signalled.signal_name == HOST_LOST_SIGNAL:
                epoch = json.loads(signalled.input.payloads[0].data)
                lost_signals.append((index, epoch))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED:
            attrs = event.activity_task_cancel_requested_event_attributes
            if attrs.scheduled_event_id == attempt_id and cancel_requested is None:
                cancel_requested = index
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
            attrs_t = event.activity_task_timed_out_event_attributes
            info = attrs_t.failure.timeout_failure_info
            if info.timeout_type == TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START:
                timeouts.append(index)
    return {
        "acquires": acquires,
        "lost_signals": lost_signals,
        "cancel_requested": cancel_requested,
        "schedule_to_start_timeouts": timeouts,
    }


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
async def cluster(
    request: pytest.FixtureRequest, settings: Settings, busybox_image: str, tmp_path: Path
) -> AsyncIterator[Cluster]:
    # A test may override TIMINGS (indirect parametrization).
    timings = {**TIMINGS, **getattr(request, "param", {})}
    # The API judges liveness (GET /workers) with the workers' timings.
    local = settings.model_copy(
        update={
            "task_queue": unique_name("tests-two-hosts"),
            "worker_heartbeat_seconds": float(timings["WORKER_HEARTBEAT_SECONDS"]),
            "worker_lost_seconds": float(timings["WORKER_LOST_SECONDS"]),
        }
    )
    async with two_hosts(local, busybox_image, tmp_path, timings=timings) as running:
        yield running


@contextlib.asynccontextmanager
async def two_hosts(
    local: Settings,
    busybox_image: str,
    tmp_path: Path,
    env: Mapping[str, Mapping[str, str]] | None = None,
    timings: Mapping[str, str] = TIMINGS,
) -> AsyncIterator[Cluster]:
    """Both hosts' engines and workers, and an API, on ``local``'s database and queue.

    ``env`` adds or overrides variables of a host's worker (by host name) over ``timings``.
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
                    **timings,
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
    cluster: Cluster, busybox_image: str, temporal_client: Client
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
    frozen_at = time.monotonic()
    at_freeze = {path.name for path in root.glob("step-*")}

    async def placed_again() -> dict[str, Any] | None:
        run = await cluster.run(job_id)
        starts = (root / ".starts").read_text().splitlines()
        return run if run.get("host") == other.name and len(starts) >= 2 else None

    replaced = await eventually(placed_again, timeout=300)
    # Printed, not asserted (no wall-clock assertions): about HOST_LOST_SECONDS plus a worker
    # beat and the new placement's start; the frozen worker's open polls no longer add a minute.
    print(  # noqa: T201
        f"\nfrozen host detected and run placed again {time.monotonic() - frozen_at:.1f} s "
        f"after the freeze (HOST_LOST_SECONDS={TIMINGS['HOST_LOST_SECONDS']})"
    )
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
    # The path: a live worker reported the host lost from its last-seen (the signal, with the
    # lost epoch), and the run was placed again on that report: the attempt left on the frozen
    # host was cancelled, never waited out to a schedule-to-start timeout.
    events = (await temporal_client.get_workflow_handle(first["run_id"]).fetch_history()).events
    path = placement_path(events)
    assert path["lost_signals"] and path["lost_signals"][0][1] == 1, path
    assert path["lost_signals"][0][0] < path["cancel_requested"] < path["acquires"][1], path
    assert path["schedule_to_start_timeouts"] == [], path
    signalled_at = events[path["lost_signals"][0][0]].event_time.ToDatetime()
    placed_at = events[path["acquires"][1]].event_time.ToDatetime()
    print(  # noqa: T201
        f"host_lost signal to the new admission: {(placed_at - signalled_at).total_seconds():.1f} s"
    )
    assert f"run {first['run_id']} (epoch 1): its host is lost" in other.log.read_text()


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


# Registrations lapse after 3 s, hosts are taken for lost only after 60 s: a freeze between
# the two is the window where the old expiry freed a live run's GPUs.
BRIEF_FREEZE = {"WORKER_LOST_SECONDS": "3", "HOST_LOST_SECONDS": "60"}


@pytest.mark.parametrize("cluster", [BRIEF_FREEZE], indirect=True)
async def test_a_host_back_before_its_run_moved_keeps_its_gpus_from_queued_runs(
    cluster: Cluster, busybox_image: str
) -> None:
    """Each host busy with one two-GPU run, a one-GPU run queued; one host frozen past its
    registration's lapse (admissions run meanwhile) but back before HOST_LOST_SECONDS: the
    queued run gets no GPU its host's run still trains on, and every run finishes."""
    names = [unique_name("hold") for _ in range(2)]
    holders = [
        await cluster.create(
            busybox_image, WAITING_TRAINER, name, max_retries=0, resources={"gpus": 2}
        )
        for name in names
    ]

    async def both_training() -> list[dict[str, Any]] | None:
        runs = [await cluster.run(job_id) for job_id in holders]
        seen = all((cluster.root(name) / ".seen").exists() for name in names)
        return runs if seen and all(r.get("status") == "running" for r in runs) else None

    runs = await eventually(both_training, timeout=180)
    assert {run["host"] for run in runs} == set(HOSTS), runs
    [(frozen_name, frozen_job, frozen_run)] = [
        (name, job_id, run)
        for name, job_id, run in zip(names, holders, runs, strict=True)
        if run["host"] == HOSTS[0]
    ]
    held = (cluster.root(frozen_name) / ".seen").read_text().strip()
    assert sorted(held.split(",")) == ["0", "1"], held
    host = cluster.hosts[HOSTS[0]]

    waiting_name = unique_name("waiting")
    waiting = await cluster.create(busybox_image, WAITING_TRAINER, waiting_name, max_retries=0)
    await wait_for_status(cluster.api, waiting, {"queued"}, timeout=60)

    async def reason() -> str:
        return str((await cluster.run(waiting)).get("queue_reason") or "")

    host.engine.freeze()
    host.signal_worker(signal.SIGSTOP)
    try:
        # An admission of the queued run ran while host-a counted as gone (its reason no
        # longer names it): that is when its leases used to expire.
        await eventually(lambda: _without(reason, "host-a"), timeout=60, interval=0.5)
    finally:
        host.engine.thaw()
        host.signal_worker(signal.SIGCONT)

    # Back, and seen by an admission of the queued run: host-a's GPUs are still held.
    async def held_again() -> bool:
        run = await cluster.run(waiting)
        placed = (run.get("host"), run.get("gpus"))
        # Before this fix it was placed on the GPUs the frozen host's run still trains on.
        assert run.get("status") == "queued", f"the queued run was placed on {placed}"
        return "host-a has 0 of 2 free" in await reason()

    await eventually(held_again, timeout=60, interval=0.5)
    await asyncio.sleep(3)  # a few more admissions (QUEUE_POLL_SECONDS=2) find the same
    queued = await cluster.run(waiting)
    assert queued["status"] == "queued", (queued, cluster.worker_logs())
    assert not (cluster.root(waiting_name) / ".seen").exists()
    # The frozen host's run was not placed again: it still trains there, on its GPUs.
    still = await cluster.run(frozen_job)
    assert (still["status"], still["host"], still["gpus"]) == (
        "running",
        HOSTS[0],
        frozen_run["gpus"],
    ), still
    assert len(await asyncio.to_thread(host.containers, frozen_job, running_only=True)) == 1

    # It ends; only then does the queued run start, on a GPU it gave back.
    (cluster.root(frozen_name) / "stop").write_text("")
    done = await wait_for_status(cluster.api, frozen_job, {"completed", "failed"}, timeout=120)
    assert done["status"] == "completed", (done, cluster.worker_logs())
    seen = cluster.root(waiting_name) / ".seen"

    async def started() -> bool:
        return seen.exists()

    await eventually(started, timeout=120)
    assert seen.read_text().strip() in held.split(","), seen.read_text()
    (cluster.root(waiting_name) / "stop").write_text("")
    (cluster.root(names[1]) / "stop").write_text("")
    for job_id in (waiting, holders[1]):
        finished = await wait_for_status(cluster.api, job_id, {"completed", "failed"}, timeout=120)
        assert finished["status"] == "completed", (finished, cluster.worker_logs())


async def _without(text: Any, word: str) -> bool:
    found = await text()
    return bool(found) and word not in found
