"""How the store's reads scale: the same operations on SQLite with N jobs and with 1,000 jobs.

    .venv/bin/python benchmarks/store_scale.py [--jobs N] [--repeat R] [--page-size S]

Builds two migrated SQLite files in a temporary directory (N jobs, and the 1,000-job baseline,
measured in the same run), times each operation as the API issues it (`jobs.store`), takes the
median of R repetitions after one warm-up, and prints the time at N, at 1,000 and the ratio.
With indexes, page reads stay flat; counts read an index (no table rows) but still grow with
the number of rows counted; a deep OFFSET page grows with its offset.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from store import jobs as job_store
from store.db import create_engine, create_sessionmaker
from store.migrate import upgrade
from store.models import Job
from workflows.models import JobStatus

log = logging.getLogger("store_scale")

BASELINE_JOBS = 1_000
DEEP_PAGE = 500
BATCH = 10_000
BASE = datetime(2025, 1, 1, tzinfo=UTC)
# Shares per 20 jobs: completed 40 %, failed 25 %, pending 15 %, running 10 %, 5 % each other.
STATUS_CYCLE = (
    [JobStatus.COMPLETED] * 8
    + [JobStatus.FAILED] * 5
    + [JobStatus.PENDING] * 3
    + [JobStatus.RUNNING] * 2
    + [JobStatus.RETRYING, JobStatus.CANCELLED]
)

Operation = Callable[[AsyncSession], Awaitable[Any]]


def job_row(number: int) -> dict[str, Any]:
    created_at = BASE + timedelta(seconds=number // 2)
    return {
        "job_id": f"train-{number:08x}",
        "name": f"job-{number:08d}",
        "image": "trainer:latest",
        "command": ["python", "train.py", "--epochs", "100"],
        # Every row has the same keys and None-ness: the ORM bulk insert then sends one
        # executemany per batch instead of one statement per run of alike rows.
        "schedule": "0 2 * * *",
        "max_retries": 3,
        "retry_count": 0,
        "checkpoint_path": f"/checkpoints/job-{number}",
        "status": STATUS_CYCLE[number % len(STATUS_CYCLE)].value,
        "created_at": created_at,
        "updated_at": created_at,
    }


async def build_store(directory: Path, jobs: int) -> AsyncEngine:
    url = f"sqlite+aiosqlite:///{directory / f'store-{jobs}.db'}"
    started = time.perf_counter()
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    async with create_sessionmaker(engine)() as session:
        for start in range(0, jobs, BATCH):
            rows = [job_row(number) for number in range(start, min(start + BATCH, jobs))]
            await session.execute(insert(Job), rows)
        await session.commit()
    log.info("built a store of %d jobs in %.1f s", jobs, time.perf_counter() - started)
    return engine


def deep_page(jobs: int, page_size: int) -> int:
    """Page 500, or the last page when there are fewer."""
    last = max(1, -(-jobs // page_size))
    return min(DEEP_PAGE, last)


def operations(jobs: int, page_size: int, status: JobStatus) -> dict[str, tuple[str, Operation]]:
    """Name -> (detail, operation). Each is what the API runs for the request it is named after."""
    page = deep_page(jobs, page_size)

    async def list_first(session: AsyncSession) -> Any:
        return await job_store.list_jobs(session, None, 1, page_size)

    async def list_deep(session: AsyncSession) -> Any:
        return await job_store.list_jobs(session, None, page, page_size)

    async def list_filtered(session: AsyncSession) -> Any:
        return await job_store.list_jobs(session, status, 1, page_size)

    async def count_filtered(session: AsyncSession) -> Any:
        # The count statement list_jobs issues for a status filter, alone.
        return await session.scalar(
            select(func.count()).select_from(Job).where(Job.status == status.value)
        )

    async def count_all(session: AsyncSession) -> Any:
        # The total list_jobs issues without a filter, alone.
        return await session.scalar(select(func.count()).select_from(Job))

    async def stats(session: AsyncSession) -> Any:
        return await job_store.count_by_status(session)

    return {
        "list page 1": ("page + total", list_first),
        "list deep page": (f"page {page}", list_deep),
        "filtered list": (f"{status.value}, page 1 + total", list_filtered),
        "filtered count": (status.value, count_filtered),
        "total count": ("unfiltered", count_all),
        "stats": ("count_by_status", stats),
    }


@dataclass
class Timing:
    detail: str
    median: float


async def measure(
    sessions: async_sessionmaker[AsyncSession], operation: Operation, repeat: int
) -> float:
    """Median seconds of ``repeat`` runs, each in a fresh session, after one warm-up run."""
    samples: list[float] = []
    for attempt in range(repeat + 1):
        async with sessions() as session:
            started = time.perf_counter()
            await operation(session)
            elapsed = time.perf_counter() - started
        if attempt:
            samples.append(elapsed)
    return statistics.median(samples)


async def time_store(
    engine: AsyncEngine, jobs: int, page_size: int, status: JobStatus, repeat: int
) -> dict[str, Timing]:
    sessions = create_sessionmaker(engine)
    results: dict[str, Timing] = {}
    for name, (detail, operation) in operations(jobs, page_size, status).items():
        results[name] = Timing(detail, await measure(sessions, operation, repeat))
    return results


def report(
    jobs: int, large: dict[str, Timing], small: dict[str, Timing], repeat: int, page_size: int
) -> str:
    lines = [
        f"SQLite store, page size {page_size}, median of {repeat} runs after one warm-up",
        "",
        f"{'operation':<16} {f'{jobs:,} jobs':>14} {f'{BASELINE_JOBS:,} jobs':>14} "
        f"{'ratio':>8}   detail (at {jobs:,} / at {BASELINE_JOBS:,})",
    ]
    for name, at_large in large.items():
        at_small = small[name]
        ratio = at_large.median / at_small.median if at_small.median else float("inf")
        detail = (
            at_large.detail
            if at_large.detail == at_small.detail
            else f"{at_large.detail} / {at_small.detail}"
        )
        lines.append(
            f"{name:<16} {at_large.median * 1000:>11.3f} ms {at_small.median * 1000:>11.3f} ms "
            f"{ratio:>7.1f}x   {detail}"
        )
    return "\n".join(lines) + "\n"


async def main_async(jobs: int, repeat: int, page_size: int, status: JobStatus) -> str:
    with tempfile.TemporaryDirectory(prefix="store-scale-") as directory:
        large_engine = await build_store(Path(directory), jobs)
        small_engine = await build_store(Path(directory), BASELINE_JOBS)
        try:
            large = await time_store(large_engine, jobs, page_size, status, repeat)
            small = await time_store(small_engine, BASELINE_JOBS, page_size, status, repeat)
        finally:
            await large_engine.dispose()
            await small_engine.dispose()
    return report(jobs, large, small, repeat, page_size)


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=positive, default=100_000, help="jobs in the large store")
    parser.add_argument("--repeat", type=positive, default=11, help="timed runs per operation")
    parser.add_argument("--page-size", type=positive, default=50, help="jobs per page (API: 50)")
    parser.add_argument(
        "--status",
        type=JobStatus,
        choices=list(JobStatus),
        default=JobStatus.FAILED,
        help="status to filter on (failed: 25 %% of the jobs)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    sys.stdout.write(asyncio.run(main_async(args.jobs, args.repeat, args.page_size, args.status)))


if __name__ == "__main__":
    main()
