"""A run's metric history: the values of every PROGRESS report, per metric name, bounded.

Trainers report as often as they like, so the history is bounded where it is written: at most
``MAX_METRICS_PER_RUN`` names per run (values of further names are counted, not kept) and at
most ``MAX_POINTS_PER_METRIC`` points per name. A series that outgrows its bound is halved at
once, in the same transaction: its points are cut into buckets and each bucket keeps its
lowest and highest value, so spikes survive, and the first and last points always stay.
Points are keyed by step, so output replayed after a reattach, or steps repeated by a retry
that resumed from a checkpoint, replace the values they had rather than add to them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import MetricHistory, MetricPoint, Run, utcnow

MAX_POINTS_PER_METRIC = 2_000
MAX_METRICS_PER_RUN = 50
MAX_NAME_LENGTH = 100  # as the trainer protocol cuts them
# Steps beyond a signed 64-bit column are not kept (no real trainer gets there).
MAX_STEP = 2**63 - 1
_DELETE_CHUNK = 500


@dataclass(frozen=True)
class Sample:
    """One value of one metric at one step."""

    step: int
    at: datetime
    value: float


def downsample(samples: Sequence[Sample], target: int) -> list[Sample]:
    """At most ``target`` of ``samples`` (ordered by step): first, last, min and max per bucket.

    The inner points are cut into ``(target - 2) // 2`` buckets of consecutive steps; each
    keeps its lowest and its highest value, in step order.
    """
    if len(samples) <= target:
        return list(samples)
    inner = samples[1:-1]
    buckets = max(1, (target - 2) // 2)
    size = math.ceil(len(inner) / buckets)
    kept = [samples[0]]
    for start in range(0, len(inner), size):
        bucket = inner[start : start + size]
        low = min(range(len(bucket)), key=lambda i: bucket[i].value)
        high = max(range(len(bucket)), key=lambda i: bucket[i].value)
        kept.extend(bucket[i] for i in sorted({low, high}))
    kept.append(samples[-1])
    return kept


async def append_samples(
    session: AsyncSession,
    *,
    job_id: str,
    run_id: str,
    samples: Mapping[str, Sequence[Sample]],
    ignored: int = 0,
) -> bool:
    """Add a batch of samples to a run's history in one transaction; False if the run is gone.

    ``ignored`` counts values the caller already turned away (its own bound on names).
    """
    history = await session.get(MetricHistory, run_id)
    if history is None:
        if await session.get(Run, run_id) is None:
            return False
        history = MetricHistory(
            run_id=run_id, job_id=job_id, series={}, ignored_values=0, updated_at=utcnow()
        )
        session.add(history)
    counts = dict(history.series)
    rows: list[dict[str, Any]] = []
    for name, points in samples.items():
        if len(name) > MAX_NAME_LENGTH or (
            name not in counts and len(counts) >= MAX_METRICS_PER_RUN
        ):
            ignored += len(points)
            continue
        by_step = {point.step: point for point in points if 0 <= point.step <= MAX_STEP}
        counts[name] = counts.get(name, 0) + len(by_step)
        rows += (
            {"run_id": run_id, "name": name, "step": p.step, "at": p.at, "value": p.value}
            for p in by_step.values()
        )
    if rows:
        await session.execute(_upsert(session), rows)
    for name, count in counts.items():
        if count > MAX_POINTS_PER_METRIC:
            counts[name] = await _halve(session, run_id, name)
    history.series = counts
    history.ignored_values += ignored
    history.updated_at = utcnow()
    await session.commit()
    return True


def _upsert(session: AsyncSession) -> Any:
    """INSERT of points that replaces the value of a step already stored."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(MetricPoint)
    return statement.on_conflict_do_update(
        index_elements=["run_id", "name", "step"],
        set_={"at": statement.excluded.at, "value": statement.excluded.value},
    )


async def _halve(session: AsyncSession, run_id: str, name: str) -> int:
    """Downsample one stored series to half its bound; the points it keeps."""
    stored = await series_samples(session, run_id, name)
    kept = downsample(stored, MAX_POINTS_PER_METRIC // 2)
    keep = {sample.step for sample in kept}
    dropped = [sample.step for sample in stored if sample.step not in keep]
    for start in range(0, len(dropped), _DELETE_CHUNK):
        await session.execute(
            delete(MetricPoint).where(
                MetricPoint.run_id == run_id,
                MetricPoint.name == name,
                MetricPoint.step.in_(dropped[start : start + _DELETE_CHUNK]),
            )
        )
    return len(kept)


async def series_samples(session: AsyncSession, run_id: str, name: str) -> list[Sample]:
    """One metric's stored points, ordered by step."""
    rows = await session.execute(
        select(MetricPoint.step, MetricPoint.at, MetricPoint.value)
        .where(MetricPoint.run_id == run_id, MetricPoint.name == name)
        .order_by(MetricPoint.step)
    )
    return [Sample(step, at, value) for step, at, value in rows.all()]


async def history_of(session: AsyncSession, run_id: str) -> tuple[dict[str, list[Sample]], int]:
    """Every metric of a run (by name, each ordered by step) and the values ignored."""
    history = await session.get(MetricHistory, run_id)
    if history is None:
        return {}, 0
    rows = await session.execute(
        select(MetricPoint.name, MetricPoint.step, MetricPoint.at, MetricPoint.value)
        .where(MetricPoint.run_id == run_id)
        .order_by(MetricPoint.name, MetricPoint.step)
    )
    found: dict[str, list[Sample]] = {}
    for name, step, at, value in rows.all():
        found.setdefault(name, []).append(Sample(step, at, value))
    return found, history.ignored_values
