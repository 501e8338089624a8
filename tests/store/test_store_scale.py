"""At 100,000 jobs, listing and filtering read indexes, and counting reads the counters.

Nothing is timed: the test captures the exact SQL that `jobs.store` sends to SQLite and checks
SQLite's `EXPLAIN QUERY PLAN` of it, and checks the answers are right. A full scan of `jobs`,
a sort of every matching row, or an index that does not lead with the filtered/ordered
columns fails the test. (benchmarks/store_scale.py measures the times.)
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.store_scale import STATUS_CYCLE, build_store
from store import jobs as job_store
from store.db import create_sessionmaker
from workflows.models import JobStatus

JOBS = 100_000
PAGE_SIZE = 50
EXPECTED_COUNTS = {
    status: JOBS // len(STATUS_CYCLE) * STATUS_CYCLE.count(status) for status in JobStatus
}
INDEX_IN_PLAN = re.compile(r"USING (?:COVERING )?INDEX (\w+)")


def job_id(number: int) -> str:
    """The id build_store gives job number ``number`` (as job_row does)."""
    return f"train-{number:08x}"


def newest_first(status: JobStatus | None) -> Iterator[str]:
    """Job ids in the order list_jobs must return them (for a pair, the larger id first)."""
    for number in range(JOBS - 1, -1, -1):
        if status is None or STATUS_CYCLE[number % len(STATUS_CYCLE)] is status:
            yield job_id(number)


def expected_page(status: JobStatus | None, page: int) -> list[str]:
    start = (page - 1) * PAGE_SIZE
    ids = newest_first(status)
    for _ in range(start):
        next(ids)
    return [next(ids) for _ in range(PAGE_SIZE)]


@pytest.fixture(scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AsyncEngine]:
    engine = await build_store(tmp_path_factory.mktemp("scale"), JOBS)
    yield engine
    await engine.dispose()


@dataclass
class Statement:
    sql: str
    parameters: Any


@contextlib.contextmanager
def captured(engine: AsyncEngine) -> Iterator[list[Statement]]:
    """Every statement sent to the driver meanwhile, exactly as sent (SQL and parameters)."""
    statements: list[Statement] = []

    def listener(
        _conn: Any, _cursor: Any, sql: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        statements.append(Statement(sql, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", listener)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", listener)


def index_columns(connection: Connection) -> dict[str, list[str]]:
    return {
        str(index["name"]): [str(column) for column in index["column_names"]]
        for index in inspect(connection).get_indexes("jobs")
    }


async def query_plan(engine: AsyncEngine, statement: Statement) -> tuple[list[str], dict[str, Any]]:
    """SQLite's plan (the detail lines) and the columns of each index of jobs."""
    async with engine.connect() as connection:
        result = await connection.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {statement.sql}", statement.parameters
        )
        plan = [str(line.detail) for line in result.all()]
        indexes = await connection.run_sync(index_columns)
    return plan, indexes


async def assert_plan(
    engine: AsyncEngine,
    statement: Statement,
    *,
    access: str,
    leading: tuple[str, ...],
    covering: bool = False,
) -> None:
    """The statement reads jobs through one index whose columns start with ``leading``.

    ``access`` is SEARCH (an equality on the index prefix) or SCAN (walk the index in order,
    which with LIMIT stops after the page). No step may sort or group every row.
    """
    plan, indexes = await query_plan(engine, statement)
    context = f"\nSQL: {statement.sql}\nparameters: {statement.parameters}\nplan: {plan}"
    steps = [line for line in plan if re.match(r"(SCAN|SEARCH) jobs\b", line)]
    assert len(steps) == 1, f"expected one access to jobs{context}"
    step = steps[0]
    match = INDEX_IN_PLAN.search(step)
    assert match is not None, f"jobs is read without an index (full table scan){context}"
    assert step.startswith(f"{access} jobs"), f"expected {access} of jobs{context}"
    if covering:
        assert "USING COVERING INDEX" in step, f"expected an index-only read{context}"
    index = match.group(1)
    assert tuple(indexes.get(index, []))[: len(leading)] == leading, (
        f"index {index} has columns {indexes.get(index)}, expected it to start with {leading}"
        f"{context}"
    )
    for line in plan:
        assert line not in ("USE TEMP B-TREE FOR ORDER BY", "USE TEMP B-TREE FOR GROUP BY"), (
            f"every row is sorted{context}"
        )


async def test_unfiltered_listing_reads_the_created_at_index(engine: AsyncEngine) -> None:
    sessions = create_sessionmaker(engine)
    async with sessions() as session:
        with captured(engine) as statements:
            rows, total = await job_store.list_jobs(session, None, 1, PAGE_SIZE)
        deep_rows, deep_total = await job_store.list_jobs(session, None, 500, PAGE_SIZE)
        last_rows, _ = await job_store.list_jobs(session, None, JOBS // PAGE_SIZE, PAGE_SIZE)

    assert total == deep_total == JOBS
    assert [job.job_id for job in rows] == expected_page(None, 1)
    assert [job.job_id for job in deep_rows] == expected_page(None, 500)
    assert [job.job_id for job in last_rows] == [job_id(n) for n in range(PAGE_SIZE - 1, -1, -1)]

    page, count = statements
    assert "ORDER BY jobs.created_at DESC, jobs.job_id DESC" in page.sql, page.sql
    assert "LIMIT" in page.sql and "WHERE" not in page.sql, page.sql
    await assert_plan(engine, page, access="SCAN", leading=("created_at",))
    # The total is read from the counters the triggers keep, not counted.
    assert "FROM counters" in count.sql and "jobs" not in count.sql, count.sql


async def test_filtered_listing_and_count_search_the_status_index(engine: AsyncEngine) -> None:
    sessions = create_sessionmaker(engine)
    async with sessions() as session:
        with captured(engine) as statements:
            rows, total = await job_store.list_jobs(session, JobStatus.FAILED, 1, PAGE_SIZE)
        deep_rows, _ = await job_store.list_jobs(session, JobStatus.FAILED, 200, PAGE_SIZE)
        for status in JobStatus:
            _, status_total = await job_store.list_jobs(session, status, 1, PAGE_SIZE)
            assert status_total == EXPECTED_COUNTS[status], status

    assert total == EXPECTED_COUNTS[JobStatus.FAILED] == 25_000
    assert [job.job_id for job in rows] == expected_page(JobStatus.FAILED, 1)
    assert {job.status for job in rows} == {"failed"}
    assert [job.job_id for job in deep_rows] == expected_page(JobStatus.FAILED, 200)

    page, count = statements
    assert "WHERE jobs.status = ?" in page.sql and "LIMIT" in page.sql, page.sql
    assert page.parameters[0] == "failed"
    await assert_plan(engine, page, access="SEARCH", leading=("status", "created_at"))
    assert "FROM counters" in count.sql and "jobs" not in count.sql, count.sql


async def test_count_by_status_reads_the_counters_only(engine: AsyncEngine) -> None:
    sessions = create_sessionmaker(engine)
    async with sessions() as session:
        with captured(engine) as statements:
            counts = await job_store.count_by_status(session)

    assert counts == EXPECTED_COUNTS
    assert sum(counts.values()) == JOBS

    (read,) = statements
    assert "FROM counters" in read.sql and "jobs" not in read.sql, read.sql


async def test_cursor_page_deep_in_the_list_searches_the_index(engine: AsyncEngine) -> None:
    sessions = create_sessionmaker(engine)
    async with sessions() as session:
        before, _ = await job_store.list_jobs(session, None, 1000, PAGE_SIZE)
        after = job_store.job_key(before[-1])
        with captured(engine) as statements:
            rows, total = await job_store.list_jobs(session, None, 1, PAGE_SIZE, after=after)

    assert total == JOBS
    assert [job.job_id for job in rows] == expected_page(None, 1001)
    page = statements[0]
    assert "jobs.created_at <" in page.sql and page.parameters[-1] == 0, page.sql
    # A seek into the (created_at, job_id) index, not a walk over the 50,000 rows before it.
    await assert_plan(engine, page, access="SEARCH", leading=("created_at",))
