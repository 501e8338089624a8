"""The SQL-derived figures of a ``/metrics`` scrape: aggregates only."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store import jobs as job_store
from store.models import NotificationDelivery, Run
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
    """Aggregate queries only: a scrape costs the same with ten runs or a million."""
    runs = await session.execute(
        select(Run.status, func.count(), func.coalesce(func.sum(Run.retry_count), 0)).group_by(
            Run.status
        )
    )
    snapshot = StoreSnapshot(jobs_by_status=await job_store.count_by_status(session))
    for status, count, retries in runs.all():
        snapshot.runs_started += int(count)
        snapshot.run_retries += int(retries)
        snapshot.runs_by_status[JobStatus(status)] = int(count)
    failures = await session.scalar(
        select(func.count())
        .select_from(NotificationDelivery)
        .where(NotificationDelivery.status == "failed")
    )
    snapshot.notification_failures = int(failures or 0)
    return snapshot
