"""Counters, the leader lease, the closed-run compare-and-set, the bulk mirror and keyset
pages, on both backends (a migrated SQLite file and PostgreSQL via TEST_POSTGRES_URL)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, event, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from store import jobs as job_store
from store import leases, schedule_events
from store import runs as run_store
from store.counters import fold_deltas, read_counters
from store.deliveries import record_delivery
from store.metrics import read_snapshot
from store.models import CounterDelta, Job, Lease, NotificationDelivery, Run, ScheduleEvent
from tests.store.test_store import T0, Sessions, add_jobs, make_job
from workflows.models import JobStatus

pytest_plugins = ["tests.store.test_store"]


async def recount(sessions: Sessions) -> dict[str, int]:
    """The counters' values as scans of the tables compute them."""
    counted = {f"jobs:{status.value}": 0 for status in JobStatus}
    counted |= {f"runs:{status.value}": 0 for status in JobStatus}
    async with sessions() as session:
        for status, number in await session.execute(
            select(Job.status, func.count()).group_by(Job.status)
        ):
            counted[f"jobs:{status}"] = number
        for status, number in await session.execute(
            select(Run.status, func.count()).group_by(Run.status)
        ):
            counted[f"runs:{status}"] = number
        counted["jobs:paused"] = (
            await session.scalar(select(func.count()).select_from(Job).where(Job.paused)) or 0
        )
        counted["jobs:scheduled"] = (
            await session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.schedule.is_not(None), Job.paused.is_(False))
            )
            or 0
        )
        counted["runs:retries"] = int(
            await session.scalar(select(func.coalesce(func.sum(Run.retry_count), 0))) or 0
        )
        counted["deliveries:failed"] = (
            await session.scalar(
                select(func.count())
                .select_from(NotificationDelivery)
                .where(NotificationDelivery.status == "failed")
            )
            or 0
        )
    return counted


async def assert_counters_exact(sessions: Sessions) -> dict[str, int]:
    async with sessions() as session:
        counters = await read_counters(session)
    assert counters == await recount(sessions)
    return counters


async def test_counters_stay_exact_through_creates_changes_and_deletes(
    sessions: Sessions,
) -> None:
    await add_jobs(
        sessions,
        make_job("train-c1", schedule="0 * * * *"),
        make_job("train-c2", schedule="0 * * * *", paused=True),
        make_job("train-c3", created_at=T0 + timedelta(seconds=1)),
    )
    counters = await assert_counters_exact(sessions)
    assert counters["jobs:pending"] == 3 and counters["jobs:scheduled"] == 1

    async with sessions() as session:
        await run_store.start_run(session, "train-c1", "run-c1", "e1", T0, "schedule")
    async with sessions() as session:
        await run_store.start_run(session, "train-c3", "run-c3", "e3", T0, "manual")
    for status, retries in ((JobStatus.RETRYING, 1), (JobStatus.FAILED, 2)):
        async with sessions() as session:
            await run_store.record_run_status(
                session,
                job_id="train-c1",
                run_id="run-c1",
                status=status,
                attempt=retries + 1,
                retry_count=retries,
                at=T0,
                error_message="exit 1",
                exit_code=1,
            )
    async with sessions() as session:
        await record_delivery(
            session,
            job_id="train-c1",
            run_id="run-c1",
            event="failed",
            channel="slack",
            status="failed",
            detail="refused",
        )
    # A raw UPDATE, as no code path of ours makes: the triggers count it all the same.
    async with sessions() as session:
        await session.execute(update(Job).where(Job.job_id == "train-c2").values(paused=False))
        await session.commit()
    counters = await assert_counters_exact(sessions)
    async with sessions() as session:
        assert await fold_deltas(session) > 0
    assert await assert_counters_exact(sessions) == counters, "a fold changes no count"
    assert counters["runs:failed"] == 1 and counters["runs:running"] == 1
    assert counters["runs:retries"] == 2 and counters["deliveries:failed"] == 1
    assert counters["jobs:scheduled"] == 2 and counters["jobs:paused"] == 0

    async with sessions() as session:
        await job_store.delete_job_rows(session, "train-c1")
        await session.commit()
    counters = await assert_counters_exact(sessions)
    assert counters["runs:failed"] == 0 and counters["runs:retries"] == 0
    assert sum(v for k, v in counters.items() if k.startswith("jobs:") and ":" in k[5:]) == 0

    async with sessions() as session:
        snapshot = await read_snapshot(session)
        counts = await job_store.count_by_status(session)
        assert await job_store.count_schedule_states(session) == (0, 1)
    assert snapshot.runs_started == 1 and snapshot.runs_by_status[JobStatus.RUNNING] == 1
    assert counts[JobStatus.PENDING] == 1 and counts[JobStatus.RUNNING] == 1
    async with sessions() as session:
        await session.execute(delete(Job))
        await session.commit()
    counters = await assert_counters_exact(sessions)
    assert set(counters.values()) == {0}


async def test_lease_has_one_holder_and_passes_on_when_it_expires(sessions: Sessions) -> None:
    async with sessions() as session:
        assert await leases.take_lease(session, "leader", "a", 60)
    async with sessions() as session:
        assert not await leases.take_lease(session, "leader", "b", 60)
    async with sessions() as session:
        assert await leases.take_lease(session, "leader", "a", 60), "the holder renews"
        assert await leases.holder_of(session, "leader") == "a"
    # The holder stops renewing: once its lease has run out, another process takes it.
    async with sessions() as session:
        await session.execute(update(Lease).values(expires_at_ms=leases.now_ms() - 1))
        await session.commit()
    async with sessions() as session:
        assert await leases.take_lease(session, "leader", "b", 60)
    async with sessions() as session:
        assert not await leases.take_lease(session, "leader", "a", 60), "a lost it"
        await leases.release_lease(session, "leader", "b")
    async with sessions() as session:
        assert await leases.holder_of(session, "leader") is None
        assert await leases.take_lease(session, "leader", "a", 60), "released: taken at once"


async def test_final_status_written_after_the_read_is_not_overwritten(
    sessions: Sessions,
) -> None:
    await add_jobs(sessions, make_job("train-f1"), make_job("train-f2"))
    for job_id in ("train-f1", "train-f2"):
        async with sessions() as session:
            await run_store.start_run(session, job_id, f"run-{job_id}", "e", T0, "manual")
    async with sessions() as session:
        seen = {run.run_id for run in await run_store.active_runs(session)}
    assert seen == {"run-train-f1", "run-train-f2"}
    # Between the reconciler's read and its decision, run f1 records its own end.
    async with sessions() as session:
        await run_store.record_run_status(
            session,
            job_id="train-f1",
            run_id="run-train-f1",
            status=JobStatus.COMPLETED,
            attempt=1,
            retry_count=0,
            at=T0,
            error_message=None,
            exit_code=0,
        )
    outcomes = {}
    for job_id in ("train-f1", "train-f2"):
        async with sessions() as session:
            outcomes[job_id] = await run_store.finish_run_if_active(
                session,
                job_id=job_id,
                run_id=f"run-{job_id}",
                status=JobStatus.CANCELLED,
                at=T0,
                error_message="terminated",
            )
    assert outcomes == {"train-f1": False, "train-f2": True}
    async with sessions() as session:
        statuses = dict((await session.execute(select(Run.run_id, Run.status))).all())
        job_statuses = dict((await session.execute(select(Job.job_id, Job.status))).all())
    assert statuses == {"run-train-f1": "completed", "run-train-f2": "cancelled"}
    assert job_statuses == {"train-f1": "completed", "train-f2": "cancelled"}
    await assert_counters_exact(sessions)


@contextmanager
def updates_of_jobs(engine: AsyncEngine) -> Iterator[list[int]]:
    """The number of rows each UPDATE of jobs carried (an executemany counts its rows)."""
    sizes: list[int] = []

    def note(_conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE JOBS"):
            sizes.append(len(params) if many else 1)

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        yield sizes
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)


async def test_mirror_writes_only_the_rows_that_changed(
    sessions: Sessions, engine: AsyncEngine
) -> None:
    await add_jobs(sessions, *(make_job(f"train-m{i}", schedule="0 * * * *") for i in range(5)))
    upcoming = T0 + timedelta(hours=1)
    states: dict[str, schedule_events.ScheduleState] = {
        f"train-m{i}": (False, None, upcoming) for i in range(5)
    }
    states["train-gone"] = (True, "a schedule without a row", None)
    with updates_of_jobs(engine) as sizes:
        async with sessions() as session:
            assert await schedule_events.mirror_states(session, states, actor="ui/cli") == 5
    assert sizes == [5], "one bulk UPDATE of every changed row"

    states["train-m3"] = (True, "paused in the UI", upcoming)
    with updates_of_jobs(engine) as sizes:
        async with sessions() as session:
            assert await schedule_events.mirror_states(session, states, actor="ui/cli") == 1
        async with sessions() as session:
            assert await schedule_events.mirror_states(session, states, actor="ui/cli") == 0
    assert sizes == [1], "only the paused job is written, and nothing once in step"
    async with sessions() as session:
        paused = await session.get(Job, "train-m3")
        events = (await session.scalars(select(ScheduleEvent.job_id))).all()
    assert paused is not None and paused.paused and paused.next_run_at is None
    assert events == ["train-m3"]
    await assert_counters_exact(sessions)


async def test_keyset_pages_cover_every_job_once_while_jobs_are_inserted(
    sessions: Sessions,
) -> None:
    # Some share a creation time: the id breaks the tie.
    await add_jobs(
        sessions,
        *(
            make_job(f"train-k{i:02d}", created_at=T0 + timedelta(seconds=i // 3))
            for i in range(23)
        ),
    )
    seen: list[str] = []
    after = None
    inserted = 0
    while True:
        async with sessions() as session:
            rows, total = await job_store.list_jobs(session, None, 1, 5, after=after)
        seen += [row.job_id for row in rows]
        assert total == 23 + inserted
        if len(rows) < 5:
            break
        after = job_store.job_key(rows[-1])
        # A newer job arrives between two pages: it sorts before the cursor.
        await add_jobs(
            sessions, make_job(f"train-new{inserted}", created_at=T0 + timedelta(days=1))
        )
        inserted += 1
    assert sorted(seen) == [f"train-k{i:02d}" for i in range(23)]
    assert len(seen) == len(set(seen)) == 23
    async with sessions() as session:
        failed_only, failed_total = await job_store.list_jobs(
            session, JobStatus.FAILED, 1, 5, after=after
        )
    assert failed_only == [] and failed_total == 0


async def test_keyset_pages_of_a_jobs_runs(sessions: Sessions) -> None:
    await add_jobs(sessions, make_job("train-r1"))
    async with sessions() as session:
        for i in range(7):
            await run_store.start_run(
                session, "train-r1", f"run-{i}", f"e{i}", T0 + timedelta(minutes=i // 2), "manual"
            )
    seen: list[str] = []
    after = None
    while True:
        async with sessions() as session:
            runs, total = await run_store.list_runs(session, "train-r1", None, 1, 3, after)
        assert total == 7
        seen += [run.run_id for run in runs]
        if len(runs) < 3:
            break
        after = run_store.run_key(runs[-1])
    assert seen == [f"run-{i}" for i in (6, 5, 4, 3, 2, 1, 0)]


async def test_counters_stay_exact_under_concurrent_writers(sessions: Sessions) -> None:
    """Activities, the reconciler and the API change rows at once: no lost count, no deadlock."""
    jobs = [f"train-p{i:02d}" for i in range(12)]
    await add_jobs(sessions, *(make_job(job_id, schedule="0 * * * *") for job_id in jobs))

    async def life(index: int, job_id: str) -> None:
        run_id = f"run-{job_id}"
        async with sessions() as session:
            await run_store.start_run(session, job_id, run_id, "e", T0, "schedule")
        async with sessions() as session:
            await run_store.record_run_status(
                session,
                job_id=job_id,
                run_id=run_id,
                status=JobStatus.RETRYING,
                attempt=2,
                retry_count=1,
                at=T0,
                error_message=None,
                exit_code=1,
            )
        async with sessions() as session:
            if index % 3 == 0:
                await run_store.finish_run_if_active(
                    session,
                    job_id=job_id,
                    run_id=run_id,
                    status=JobStatus.CANCELLED,
                    at=T0,
                    error_message="terminated",
                )
            else:
                await run_store.record_run_status(
                    session,
                    job_id=job_id,
                    run_id=run_id,
                    status=JobStatus.COMPLETED,
                    attempt=2,
                    retry_count=1,
                    at=T0,
                    error_message=None,
                    exit_code=0,
                )
        if index % 4 == 0:
            async with sessions() as session:
                await job_store.delete_job_rows(session, job_id)
                await session.commit()

    async def folds() -> None:
        for _ in range(6):
            async with sessions() as session:
                await fold_deltas(session)
            await asyncio.sleep(0.01)

    await asyncio.gather(
        folds(), folds(), *(life(index, job_id) for index, job_id in enumerate(jobs))
    )
    counters = await assert_counters_exact(sessions)
    async with sessions() as session:
        await fold_deltas(session)
        assert await session.scalar(select(func.count()).select_from(CounterDelta)) == 0
    assert await assert_counters_exact(sessions) == counters
    assert counters["runs:completed"] + counters["runs:cancelled"] == 9
    assert counters["runs:retries"] == 9 and counters["jobs:scheduled"] == 9


async def test_mirror_candidates_are_the_paused_and_the_due(sessions: Sessions) -> None:
    now = T0
    await add_jobs(
        sessions,
        make_job("train-c-paused", schedule="0 * * * *", paused=True),
        make_job("train-c-oneoff", schedule=None),
        make_job("train-c-empty", schedule=""),
        make_job("train-c-ahead", schedule="0 * * * *", next_run_at=now + timedelta(hours=1)),
        make_job("train-c-fired", schedule="0 * * * *", next_run_at=now - timedelta(minutes=1)),
        make_job("train-c-older", schedule="0 * * * *", next_run_at=now - timedelta(hours=2)),
        make_job("train-c-unknown", schedule="0 * * * *", next_run_at=None),
    )
    async with sessions() as session:
        paused, due = await schedule_events.mirror_candidates(session, now, 10)
        assert paused == ["train-c-paused"]
        # Not known yet first, then the longest overdue; one-offs and future firings never.
        assert due == ["train-c-unknown", "train-c-older", "train-c-fired"]
        _, first_two = await schedule_events.mirror_candidates(session, now, 2)
        assert first_two == ["train-c-unknown", "train-c-older"]
