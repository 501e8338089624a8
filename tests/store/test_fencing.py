"""Placement epochs on both backends: each new placement of a run bumps its epoch, and what a
copy under an older epoch reports (checkpoints, progress) is not recorded."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from activities.attempt_watcher import AttemptWatcher
from core.settings import LogLimits
from runtimes.trainer_protocol import ProgressReport
from store import capacity, checkpoints, fencing
from store.db import create_engine, create_sessionmaker
from store.models import Run, utcnow
from tests.store.test_capacity_store import LOST, POOL, seed
from tests.store.test_store import database_url  # noqa: F401  (the two-backend fixture)


def watcher(
    sessions: object, job_id: str, run_id: str, directory: Path, epoch: int, prefix: str
) -> AttemptWatcher:
    return AttemptWatcher(
        sessions=sessions,  # type: ignore[arg-type]
        job_id=job_id,
        run_id=run_id,
        attempt=1,
        log_path=directory.parent / f"log-{epoch}.txt",
        checkpoint_dir=directory,
        limits=LogLimits(1_000_000, 10_000),
        epoch=epoch,
        checkpoint_prefix=prefix,
    )


async def test_a_run_placed_again_fences_its_stale_copy(
    database_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    engine = create_engine(database_url)
    sessions = create_sessionmaker(engine)
    try:
        [(job_id, run_id)] = await seed(engine, 1)
        now = utcnow()

        async def admit(at: object) -> capacity.Placement:
            async with sessions() as session:
                return await capacity.admit(
                    session,
                    pool=POOL,
                    job_id=job_id,
                    run_id=run_id,
                    need=capacity.Need(gpus=1),
                    now=at,  # type: ignore[arg-type]
                    lost_after=LOST,
                )

        first = await admit(now)
        assert first.admitted and first.epoch == 1
        again = await admit(now)  # the lease is kept: the same placement, the same epoch
        assert (again.host, again.gpus, again.epoch) == (first.host, first.gpus, 1)

        # The first copy records a checkpoint while it is current.
        root = tmp_path / "ckpt"
        root.mkdir()
        (root / "step-1.pt").write_bytes(b"one")
        stale = watcher(sessions, job_id, run_id, root, 1, "")
        await stale.scan_checkpoints(settled_only=False)

        # Its host goes silent past WORKER_LOST_SECONDS; the other one heartbeats.
        later = now + LOST + timedelta(seconds=1)
        other = "host-b" if first.host == "host-a" else "host-a"
        async with sessions() as session:
            assert await capacity.heartbeat_worker(session, f"{POOL}-{other}", later)
            await capacity.release(session, run_id)
        placed = await admit(later)
        assert placed.admitted and placed.host == other and placed.epoch == 2

        async with sessions() as session:
            assert not await fencing.is_current(session, run_id, 1)
            assert await fencing.is_current(session, run_id, 2)
            assert await fencing.is_current(session, run_id, None)
            assert not await fencing.hold_current_epoch(session, run_id, 1)
            assert await fencing.hold_current_epoch(session, run_id, 2)
            await session.rollback()
            pairs = [(run_id, 1), (run_id, 2), ("unknown", 1)]
            assert await fencing.stale_pairs(session, pairs) == {(run_id, 1)}

        # The stale copy writes on: a newer checkpoint and progress, neither recorded.
        (root / "step-9.pt").write_bytes(b"stale")
        stale.progress = ProgressReport(step=9)
        await stale.scan_checkpoints(settled_only=False)
        await stale.flush_progress()
        assert stale.fenced
        # The current copy writes in its epoch's directory; its paths are the job's.
        current_dir = root / ".epoch-2"
        current_dir.mkdir()
        (current_dir / "step-3.pt").write_bytes(b"current")
        current = watcher(sessions, job_id, run_id, current_dir, 2, ".epoch-2/")
        await current.scan_checkpoints(settled_only=False)
        assert not current.fenced

        async with sessions() as session:
            recorded = sorted(c.path for c in await checkpoints.list_checkpoints(session, job_id))
            latest = await checkpoints.latest_checkpoint(session, job_id, run_id)
            progress = await session.scalar(select(Run.progress).where(Run.run_id == run_id))
        assert recorded == [".epoch-2/step-3.pt", "step-1.pt"]
        assert latest is not None and latest.path == ".epoch-2/step-3.pt"
        assert progress is None
    finally:
        await engine.dispose()
