"""The SQL-derived figures of a ``/metrics`` scrape: aggregates only."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from store.counters import by_status, read_counters
from workflows.models import JobStatus


@dataclass
class StoreSnapshot:
    """The SQL-derived figures of one scrape."""

    jobs_by_status: dict[JobStatus, int] = field(default_factory=dict)
    runs_started: int = 0
    runs_by_status: dict[JobStatus, int] = field(default_factory=dict)
    run_retries: int = 0
    notification_failures: int = 0


async def read_snapshot(session: AsyncSession) -> StoreSnapshot:
    """From the counters only: a scrape costs the same with ten runs or a million."""
    counters = await read_counters(session)
    runs = by_status(counters, "runs")
    return StoreSnapshot(
        jobs_by_status=by_status(counters, "jobs"),
        runs_started=sum(runs.values()),
        runs_by_status=runs,
        run_retries=counters.get("runs:retries", 0),
        notification_failures=counters.get("deliveries:failed", 0),
    )
