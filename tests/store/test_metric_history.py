"""A run's metric history on both backends: batches, bounds, replaced steps and deletion."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from store import jobs as job_store
from store import metric_history
from store import runs as run_store
from store.db import create_engine, create_sessionmaker
from store.metric_history import MAX_METRICS_PER_RUN, MAX_POINTS_PER_METRIC, Sample, downsample
from store.migrate import upgrade
from store.models import MetricHistory, MetricPoint, Run
from tests.store.test_store import T0, add_jobs, make_job, postgres_url, reset_schema

Sessions = async_sessionmaker[AsyncSession]
JOB = "train-0000d001"
RUN = "wf-metrics-1"


@pytest.fixture(params=["sqlite", "postgresql"])
async def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Sessions]:
    """A freshly migrated database on each backend, with one job and one run."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        await asyncio.to_thread(upgrade, url)
    else:
        url = postgres_url()
        await asyncio.to_thread(reset_schema, url)
    engine: AsyncEngine = create_engine(url)
    made = create_sessionmaker(engine)
    await add_jobs(made, make_job(JOB))
    async with made() as session:
        await run_store.start_run(session, JOB, RUN, "exec-1", T0, "schedule")
    yield made
    await engine.dispose()


def samples(steps: range, value: float = 1.0) -> list[Sample]:
    return [Sample(step, T0 + timedelta(seconds=step), value + step / 1000) for step in steps]


async def append(sessions: Sessions, batch: dict[str, list[Sample]], ignored: int = 0) -> bool:
    async with sessions() as session:
        return await metric_history.append_samples(
            session, job_id=JOB, run_id=RUN, samples=batch, ignored=ignored
        )


async def stored(sessions: Sessions) -> tuple[dict[str, list[Sample]], int]:
    async with sessions() as session:
        return await metric_history.history_of(session, RUN)


async def count(sessions: Sessions, model: type[MetricPoint] | type[MetricHistory]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_batches_are_kept_by_step_and_a_repeated_step_replaces_its_value(
    sessions: Sessions,
) -> None:
    assert await append(sessions, {"loss": samples(range(10, 20)), "acc": samples(range(3))})
    # A retry resumed from step 15: its reports of steps 15 to 24 replace the earlier ones.
    assert await append(sessions, {"loss": samples(range(15, 25), value=5.0)})

    history, ignored = await stored(sessions)
    assert ignored == 0
    assert sorted(history) == ["acc", "loss"]
    assert [p.step for p in history["loss"]] == list(range(10, 25))
    assert history["loss"][4].value == pytest.approx(1.014)
    assert history["loss"][5].value == pytest.approx(5.015)
    assert all(p.at.tzinfo is not None for p in history["loss"])
    assert [p.step for p in history["acc"]] == [0, 1, 2]


async def test_a_series_stays_within_its_bound_with_first_last_and_extremes(
    sessions: Sessions,
) -> None:
    spike = Sample(3_333, T0, 1e6)
    dip = Sample(7_777, T0, -1e6)
    for start in range(0, 10_000, 1_000):
        batch = [s for s in samples(range(start, start + 1_000)) if s.step not in (3_333, 7_777)]
        batch += [p for p in (spike, dip) if start <= p.step < start + 1_000]
        assert await append(sessions, {"loss": batch})
        history, _ = await stored(sessions)
        assert len(history["loss"]) <= MAX_POINTS_PER_METRIC

    points = history["loss"]
    assert points[0].step == 0 and points[-1].step == 9_999
    steps = [p.step for p in points]
    assert steps == sorted(steps)
    assert 3_333 in steps and 7_777 in steps, "a min/max bucket lost an extreme value"
    assert len(points) >= MAX_POINTS_PER_METRIC // 4, "downsampled far below its bound"
    async with sessions() as session:
        row = await session.get(MetricHistory, RUN)
        assert row is not None and row.series == {"loss": len(points)}


async def test_names_beyond_the_cap_are_ignored_and_counted(sessions: Sessions) -> None:
    first = {f"m{i:02d}": samples(range(5)) for i in range(MAX_METRICS_PER_RUN - 2)}
    assert await append(sessions, first)
    later = {f"m{i:02d}": samples(range(5, 8)) for i in range(MAX_METRICS_PER_RUN + 10)}
    assert await append(sessions, later, ignored=4)

    history, ignored = await stored(sessions)
    assert len(history) == MAX_METRICS_PER_RUN
    assert "m49" in history and "m50" not in history
    assert [p.step for p in history["m00"]] == list(range(8))
    assert ignored == 4 + 10 * 3


async def test_a_missing_run_records_nothing(sessions: Sessions) -> None:
    async with sessions() as session:
        assert not await metric_history.append_samples(
            session, job_id=JOB, run_id="no-such-run", samples={"loss": samples(range(3))}
        )
    assert await count(sessions, MetricPoint) == 0
    assert await stored(sessions) == ({}, 0)


async def test_deleting_the_job_deletes_its_history(sessions: Sessions) -> None:
    other_job, other_run = "train-0000d002", "wf-metrics-2"
    await add_jobs(sessions, make_job(other_job))
    async with sessions() as session:
        await run_store.start_run(session, other_job, other_run, "exec-2", T0, "schedule")
        await metric_history.append_samples(
            session, job_id=other_job, run_id=other_run, samples={"loss": samples(range(4))}
        )
    await append(sessions, {"loss": samples(range(6))})
    assert await count(sessions, MetricPoint) == 10

    async with sessions() as session:
        await job_store.delete_job_rows(session, JOB)
        await session.commit()
    assert await stored(sessions) == ({}, 0)
    assert await count(sessions, MetricPoint) == 4
    assert await count(sessions, MetricHistory) == 1

    # The foreign keys alone do it too: a run deleted directly takes its history along.
    async with sessions() as session:
        await session.delete(await session.get(Run, other_run))
        await session.commit()
    assert await count(sessions, MetricPoint) == 0
    assert await count(sessions, MetricHistory) == 0


def test_downsample_keeps_first_last_and_each_buckets_extremes() -> None:
    series = samples(range(5_000))
    series[1234] = Sample(1234, T0, -50.0)
    kept = downsample(series, 1_000)
    assert len(kept) <= 1_000
    assert kept[0] == series[0] and kept[-1] == series[-1]
    assert series[1234] in kept
    assert [p.step for p in kept] == sorted({p.step for p in kept})
    assert downsample(series[:10], 1_000) == series[:10]
