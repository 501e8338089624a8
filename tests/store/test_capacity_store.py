"""GPU leases in SQL on both backends: exclusive under concurrent admissions from several
processes' engines, kept through their worker's absence, given back on release."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from store import capacity, fencing
from store.db import create_engine, create_sessionmaker
from store.jobs import new_job
from store.models import GpuLease, Run, utcnow
from tests.store.test_store import database_url  # noqa: F401  (the two-backend fixture)
from workflows.models import JobStatus

POOL = "pool"
LOST = timedelta(seconds=60)


async def seed(engine: AsyncEngine, runs: int) -> list[tuple[str, str]]:
    """Two workers of two GPUs each, and ``runs`` running runs of one job each."""
    sessions = create_sessionmaker(engine)
    now = utcnow()
    async with sessions() as session:
        for host in ("host-a", "host-b"):
            await capacity.register_worker(
                session,
                name=host,
                pool=POOL,
                task_queue=f"{POOL}-{host}",
                gpus=["0", "1"],
                cpus=8,
                memory_bytes=2**34,
                max_attempts=4,
                now=now,
            )
    pairs = []
    async with sessions() as session:
        for index in range(runs):
            job_id = f"job-{index:03d}"
            run_id = f"{job_id}-run"
            session.add(
                new_job(
                    job_id,
                    {
                        "name": job_id,
                        "image": "busybox",
                        "command": ["true"],
                        "max_retries": 0,
                        "priority": 0,
                    },
                )
            )
            await session.flush()
            session.add(
                Run(
                    run_id=run_id,
                    execution_id="e",
                    job_id=job_id,
                    trigger="manual",
                    status=JobStatus.RUNNING.value,
                    started_at=now + timedelta(milliseconds=index),
                    updated_at=now,
                )
            )
            pairs.append((job_id, run_id))
        await session.commit()
    return pairs


async def test_concurrent_admissions_from_two_engines_never_double_lease(
    database_url: str,  # noqa: F811
) -> None:
    engines = [create_engine(database_url) for _ in range(2)]
    try:
        pairs = await seed(engines[0], 12)

        async def admit(index: int, job_id: str, run_id: str) -> capacity.Placement:
            sessions = create_sessionmaker(engines[index % 2])
            async with sessions() as session:
                return await capacity.admit(
                    session,
                    pool=POOL,
                    job_id=job_id,
                    run_id=run_id,
                    need=capacity.Need(gpus=1),
                    now=utcnow(),
                    lost_after=LOST,
                )

        placements = await asyncio.gather(
            *(admit(index, job_id, run_id) for index, (job_id, run_id) in enumerate(pairs))
        )
        admitted = [p for p in placements if p.admitted]
        held = Counter((p.host, gpu) for p in admitted for gpu in p.gpus)
        assert len(admitted) == 4
        assert set(held) == {(h, g) for h in ("host-a", "host-b") for g in ("0", "1")}
        assert all(count == 1 for count in held.values())
        waiting = [p for p in placements if not p.admitted]
        assert all(p.reason and "waiting for 1 GPU" in p.reason for p in waiting)

        sessions = create_sessionmaker(engines[0])
        async with sessions() as session:
            rows = (await session.scalars(select(GpuLease))).all()
            assert len(rows) == 4
            queued = await session.scalars(
                select(Run.run_id).where(Run.status == JobStatus.QUEUED.value)
            )
            assert len(queued.all()) == 8
            # A release frees its GPU for the head of the line, and only for it.
            holder = next(
                run_id for (job_id, run_id), p in zip(pairs, placements, strict=True) if p.admitted
            )
            freed = await capacity.release(session, holder)
            assert freed.gpus == 1
            head = await capacity.next_in_queue(session, POOL, 1, 0, utcnow(), LOST)
            later = [run_id for (_, run_id), p in zip(pairs, placements, strict=True)]
            waiting_ids = [r for r, p in zip(later, placements, strict=True) if not p.admitted]
            assert head == [waiting_ids[0]]
            behind = await capacity.admit(
                session,
                pool=POOL,
                job_id=waiting_ids[1].removesuffix("-run"),
                run_id=waiting_ids[1],
                need=capacity.Need(gpus=1),
                now=utcnow(),
                lost_after=LOST,
            )
            assert not behind.admitted and behind.position == 2
            assert "behind 1 earlier run" in (behind.reason or "")
            first = await capacity.admit(
                session,
                pool=POOL,
                job_id=waiting_ids[0].removesuffix("-run"),
                run_id=waiting_ids[0],
                need=capacity.Need(gpus=1),
                now=utcnow(),
                lost_after=LOST,
            )
            assert first.admitted and first.gpus
    finally:
        for engine in engines:
            await engine.dispose()


async def test_leases_of_a_lost_worker_stay_until_their_runs_are_placed_again(
    database_url: str,  # noqa: F811
) -> None:
    """A host frozen past WORKER_LOST_SECONDS may come back with its containers training:
    its GPUs are leased to nobody else until their runs are placed again elsewhere."""
    engine = create_engine(database_url)
    try:
        pairs = await seed(engine, 6)
        sessions = create_sessionmaker(engine)
        now = utcnow()

        async def admit(index: int, at: datetime, gpus: int = 1) -> capacity.Placement:
            job_id, run_id = pairs[index]
            async with sessions() as session:
                return await capacity.admit(
                    session,
                    pool=POOL,
                    job_id=job_id,
                    run_id=run_id,
                    need=capacity.Need(gpus=gpus),
                    now=at,
                    lost_after=LOST,
                )

        async def gpu_leases() -> set[tuple[str, str, str]]:
            async with sessions() as session:
                rows = (await session.scalars(select(GpuLease))).all()
                return {(row.host, row.gpu, row.run_id) for row in rows}

        placed = [await admit(index, now) for index in range(4)]
        assert all(p.admitted for p in placed)
        on_b = sorted(pairs[i][1] for i, p in enumerate(placed) if p.host == "host-b")
        held = await gpu_leases()
        # host-b stops renewing; later, host-a renews: host-b takes nothing new, but its
        # leases stay, and its runs are the ones found on a lost host.
        later = now + LOST + timedelta(seconds=1)
        async with sessions() as session:
            assert await capacity.heartbeat_worker(session, f"{POOL}-host-a", later)
        fifth = await admit(4, later)
        assert not fifth.admitted
        assert "host-a has 0 of 2 free" in (fifth.reason or "")
        assert await gpu_leases() == held
        async with sessions() as session:
            lost = await fencing.runs_on_lost_hosts(session, POOL, later - LOST)
            assert lost == [(run_id, 1) for run_id in on_b]
            assert await fencing.runs_on_lost_hosts(session, "other-pool", later) == []
        # host-b comes back before its runs were placed again: its GPUs are still theirs.
        back = later + timedelta(seconds=1)
        async with sessions() as session:
            assert await capacity.heartbeat_worker(session, f"{POOL}-host-b", back)
            assert await fencing.seen_since(session, f"{POOL}-host-b", back)
            assert await fencing.runs_on_lost_hosts(session, POOL, back - LOST) == []
        fifth = await admit(4, back)
        assert not fifth.admitted and await gpu_leases() == held
        # host-b is lost again and one of its runs is placed again: only now is its GPU
        # given back (host-a is full, so that run waits, first in line).
        gone = back + LOST + timedelta(seconds=1)
        async with sessions() as session:
            assert await capacity.heartbeat_worker(session, f"{POOL}-host-a", gone)
        moved = await admit(pairs.index(next(p for p in pairs if p[1] == on_b[0])), gone)
        assert not moved.admitted
        assert {row for row in await gpu_leases() if row[2] == on_b[0]} == set()
        # Too large for any worker: said so, with the largest worker's GPUs.
        huge = await admit(5, gone, gpus=4)
        assert not huge.admitted
        assert "no registered worker has that much" in (huge.reason or "")
        assert "2 GPUs" in (huge.reason or "")
    finally:
        await engine.dispose()


async def test_the_lease_of_a_run_that_is_over_is_dropped(database_url: str) -> None:  # noqa: F811
    """A workflow terminated behind the orchestrator's back never releases; once its run is
    recorded final (the run reconciler does that), the next admission takes the GPU."""
    engine = create_engine(database_url)
    try:
        pairs = await seed(engine, 5)
        sessions = create_sessionmaker(engine)
        now = utcnow()
        async with sessions() as session:
            for job_id, run_id in pairs[:4]:
                assert (
                    await capacity.admit(
                        session,
                        pool=POOL,
                        job_id=job_id,
                        run_id=run_id,
                        need=capacity.Need(gpus=1),
                        now=now,
                        lost_after=LOST,
                    )
                ).admitted
            ended = await session.get(Run, pairs[0][1])
            assert ended is not None
            ended.status = JobStatus.CANCELLED.value
            await session.commit()
            job_id, run_id = pairs[4]
            placed = await capacity.admit(
                session,
                pool=POOL,
                job_id=job_id,
                run_id=run_id,
                need=capacity.Need(gpus=1),
                now=now,
                lost_after=LOST,
            )
            assert placed.admitted
            holders = {row.run_id for row in (await session.scalars(select(GpuLease))).all()}
            assert pairs[0][1] not in holders and run_id in holders
    finally:
        await engine.dispose()
