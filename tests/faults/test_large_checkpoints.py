"""Large checkpoints: hashed once per content, never blocking heartbeats, sizes past 2 GiB.

The evidence is a count, not a time: ``checkpoint_files.HASHED`` counts every read of a file
for its sha256. Sparse files (``truncate``) make GiB-sized checkpoints that take no disk;
reading one still reads every byte (zeros), so each hash costs a second or more.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client

from activities import checkpoint_files
from activities.attempt_watcher import AttemptWatcher
from activities.checkpoint_files import HASHED
from core.settings import LogLimits, Settings
from runtimes.base import ContainerSpec
from runtimes.process import ProcessRuntime
from store import checkpoints as checkpoint_store
from store.db import create_engine, create_sessionmaker
from store.migrate import upgrade
from store.models import Checkpoint
from tests.conftest import api_client, make_settings, unique_name, wait_for_status
from tests.store.test_store import Sessions, add_jobs, make_job, postgres_url, reset_schema
from worker import build_worker

GIB = 1024**3
JOB = "train-0000f001"


async def run_attempt(
    sessions: Sessions, checkpoint_dir: Path, run_id: str, attempt: int, *announced: str
) -> None:
    """What the activity does with one attempt's output: follow it, then the last scan.

    A new watcher each time, as each attempt (and each activity retry) is a new activity.
    """
    watcher = AttemptWatcher(
        sessions=sessions,
        job_id=JOB,
        run_id=run_id,
        attempt=attempt,
        log_path=checkpoint_dir.parent / "logs" / f"{run_id}-{attempt}.log",
        checkpoint_dir=checkpoint_dir,
        limits=LogLimits(max_bytes=1 << 20, max_line=1 << 16),
    )
    # A real unit of the process runtime prints the announcements, as a trainer would.
    runtime = ProcessRuntime(checkpoint_dir.parent / "process-runtime")
    lines = [f'CHECKPOINT {{"path": "{path}", "step": 1}}' for path in announced]
    name = f"orch-ckpt-{uuid.uuid4().hex[:12]}"
    command = ["sh", "-c", 'for line in "$@"; do echo "$line"; done', "sh", *lines]
    await runtime.start(ContainerSpec(name, JOB, run_id, attempt, "unused", command))
    try:
        await watcher.follow(runtime, name)
        await watcher.finish_checkpoints()
    finally:
        await runtime.remove(name)


async def recorded(sessions: Sessions, path: str) -> list[tuple[int, str]]:
    async with sessions() as session:
        rows = await session.execute(
            select(Checkpoint.size_bytes, Checkpoint.sha256)
            .where(Checkpoint.job_id == JOB, Checkpoint.path == path)
            .order_by(Checkpoint.id)
        )
        return [(size, sha256) for size, sha256 in rows.all()]


def sparse(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path.resolve()


@pytest.fixture
async def sqlite_sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    await add_jobs(sessions, make_job(JOB))
    yield sessions
    await engine.dispose()


async def test_an_unchanged_checkpoint_is_hashed_once_across_attempts_and_runs(
    sqlite_sessions: Sessions, tmp_path: Path
) -> None:
    sessions = sqlite_sessions
    checkpoint_dir = (tmp_path / "checkpoints").resolve()
    big = sparse(checkpoint_dir / "model-1.pt", GIB + 4096)

    # Announced and found by the last scan: one attempt reads it once.
    await run_attempt(sessions, checkpoint_dir, "wf-1", 1, "model-1.pt")
    assert HASHED.of(big) == 1
    ((size, sha256),) = await recorded(sessions, "model-1.pt")
    assert size == GIB + 4096 and len(sha256) == 64

    # The next attempt, a retry of that activity, the next run: none reads it again.
    await run_attempt(sessions, checkpoint_dir, "wf-1", 2, "model-1.pt")
    await run_attempt(sessions, checkpoint_dir, "wf-1", 2, "model-1.pt")
    await run_attempt(sessions, checkpoint_dir, "wf-2", 1)
    assert HASHED.of(big) == 1
    assert await recorded(sessions, "model-1.pt") == [(size, sha256)]

    # A new modification time: read again (same content: still one record), then cached.
    stat = big.stat()
    os.utime(big, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    await run_attempt(sessions, checkpoint_dir, "wf-3", 1, "model-1.pt")
    assert HASHED.of(big) == 2
    await run_attempt(sessions, checkpoint_dir, "wf-3", 2, "model-1.pt")
    assert HASHED.of(big) == 2
    assert await recorded(sessions, "model-1.pt") == [(size, sha256)]

    # A new size: read again, a new record, then cached.
    with open(big, "r+b") as handle:
        handle.truncate(GIB + 8192)
    await run_attempt(sessions, checkpoint_dir, "wf-4", 1, "model-1.pt")
    assert HASHED.of(big) == 3
    await run_attempt(sessions, checkpoint_dir, "wf-4", 2)
    assert HASHED.of(big) == 3
    grown = await recorded(sessions, "model-1.pt")
    assert len(grown) == 2 and grown[1][0] == GIB + 8192 and grown[1][1] != sha256


async def test_a_checkpoint_directory_is_hashed_again_only_when_its_tree_changes(
    sqlite_sessions: Sessions, tmp_path: Path
) -> None:
    sessions = sqlite_sessions
    checkpoint_dir = (tmp_path / "checkpoints").resolve()
    weights = sparse(checkpoint_dir / "step-5" / "weights.bin", 4096)
    optimizer = sparse(checkpoint_dir / "step-5" / "optim" / "state.bin", 2048)

    await run_attempt(sessions, checkpoint_dir, "wf-1", 1, "step-5")
    await run_attempt(sessions, checkpoint_dir, "wf-1", 2, "step-5")
    assert (HASHED.of(weights), HASHED.of(optimizer)) == (1, 1)

    # A rename inside changes no file's size or time, but the directory's: hashed again.
    renamed = optimizer.rename(optimizer.with_name("state-0.bin"))
    await run_attempt(sessions, checkpoint_dir, "wf-2", 1)
    await run_attempt(sessions, checkpoint_dir, "wf-2", 2)
    assert (HASHED.of(weights), HASHED.of(renamed)) == (2, 1)
    assert len(await recorded(sessions, "step-5")) == 2  # names are part of the content


async def test_a_3_gib_checkpoint_on_postgresql_is_recorded_and_listed(
    tmp_path: Path, temporal_client: Client
) -> None:
    url = postgres_url()
    await asyncio.to_thread(reset_schema, url)
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    try:
        await add_jobs(sessions, make_job(JOB, checkpoint_path="/checkpoints/large"))
        checkpoint_dir = (tmp_path / "checkpoints").resolve()
        big = sparse(checkpoint_dir / "ckpt-3000.pt", 3 * GIB)

        await run_attempt(sessions, checkpoint_dir, "wf-1", 1, "ckpt-3000.pt")
        await run_attempt(sessions, checkpoint_dir, "wf-1", 2, "ckpt-3000.pt")
        assert HASHED.of(big) == 1
        async with sessions() as session:
            latest = await checkpoint_store.latest_checkpoint(session, JOB)
        assert latest is not None and latest.size_bytes == 3221225472
    finally:
        await engine.dispose()

    # Read back as the API serves it, from PostgreSQL (no worker needed: nothing runs).
    settings = make_settings(
        temporal_client, tmp_path / "api-data", database_url=url, task_queue="tests-pg-ckpt"
    )
    async with api_client(settings) as api:
        response = await api.get(f"/jobs/{JOB}/checkpoints")
    assert response.status_code == 200, response.text
    listing: dict[str, Any] = response.json()
    assert [c["size_bytes"] for c in listing["checkpoints"]] == [3221225472]
    assert listing["latest"]["path"] == "ckpt-3000.pt"
    assert listing["latest"]["size_bytes"] == 3221225472


async def test_hashing_a_large_checkpoint_neither_stops_heartbeats_nor_repeats(
    settings: Settings,
    temporal_client: Client,
    busybox_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reproduces the report: a checkpoint that takes longer to hash than the heartbeat
    timeout, in a directory every attempt sees again. Before the fix the scan held up the
    heartbeat (activity retried on "Heartbeat timeout") and every attempt re-hashed it."""
    local = settings.model_copy(
        update={
            "task_queue": "tests-large-checkpoints",
            "heartbeat_timeout_seconds": 2.0,
            "checkpoint_scan_seconds": 0.3,
        }
    )
    checkpoint_path = f"/checkpoints/{unique_name('large')}"
    job_dir = local.checkpoint_root_dir / checkpoint_path.lstrip("/")
    real_fingerprint = checkpoint_files.fingerprint

    def slow_fingerprint(path: Path, stop: threading.Event | None = None) -> tuple[int, str]:
        # However fast this disk, each hash here outlasts the heartbeat timeout 3 times.
        result = real_fingerprint(path, stop)
        if path.is_relative_to(job_dir):
            time.sleep(3 * local.heartbeat_timeout_seconds)
        return result

    monkeypatch.setattr(checkpoint_files, "fingerprint", slow_fingerprint)
    script = (
        'if [ "$ATTEMPT" = 1 ]; then truncate -s 1G $CHECKPOINT_DIR/ckpt-1.bin; fi; '
        'echo "CHECKPOINT {\\"path\\": \\"ckpt-1.bin\\", \\"step\\": 1}"; '
        'echo "resume from $RESUME_FROM"; sleep 2; [ "$ATTEMPT" = 2 ]'
    )
    async with build_worker(local, temporal_client) as worker, worker:
        async with api_client(local) as api:
            created = await api.post(
                "/jobs",
                json={
                    "name": unique_name(),
                    "image": busybox_image,
                    "command": ["sh", "-c", script],
                    "max_retries": 1,
                    "checkpoint_path": checkpoint_path,
                },
            )
            assert created.status_code == 201, created.text
            job_id = created.json()["job_id"]
            done = await wait_for_status(api, job_id, {"completed", "failed"}, timeout=120)
            listing = (await api.get(f"/jobs/{job_id}/checkpoints")).json()
            logs = (await api.get(f"/jobs/{job_id}/logs")).text

    assert done["status"] == "completed", done
    assert done["retry_count"] == 1  # the trainer's own failure, once
    # Announced by both attempts, found by their scans, read for its sha256 once in all.
    assert HASHED.of(job_dir / "ckpt-1.bin") == 1
    assert [(c["path"], c["size_bytes"]) for c in listing["checkpoints"]] == [("ckpt-1.bin", GIB)]
    assert f"resume from {checkpoint_path}/ckpt-1.bin" in logs
    # No activity attempt was lost to a heartbeat timeout: each training attempt took one.
    history = await temporal_client.get_workflow_handle(done["latest_run_id"]).fetch_history()
    activity_attempts = [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.HasField("activity_task_started_event_attributes")
    ]
    timeouts = [
        event
        for event in history.events
        if event.HasField("activity_task_timed_out_event_attributes")
    ]
    assert timeouts == []
    assert set(activity_attempts) == {1}
