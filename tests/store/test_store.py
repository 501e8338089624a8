"""The SQL store on both backends: a migrated SQLite file and PostgreSQL (TEST_POSTGRES_URL).

No Temporal, no Docker: only `jobs.store` against a schema built by the Alembic migrations.
Every test gets a fresh schema (a new SQLite file; PostgreSQL downgraded to base and upgraded
to head), so tests are independent of each other and of their order.
"""

from __future__ import annotations

import asyncio
import os
import re
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import BigInteger, MetaData, func, inspect, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.errors import JobNotFound
from store import checkpoints as checkpoint_store
from store import jobs as job_store
from store import journal
from store import runs as run_store
from store.db import create_engine, create_sessionmaker
from store.migrate import alembic_config, upgrade
from store.models import Base, IssuedJobId, Job, Run, ScheduleSync
from workflows.models import JobStatus

POSTGRES_URL_VARIABLE = "TEST_POSTGRES_URL"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
Sessions = async_sessionmaker[AsyncSession]


def postgres_url() -> str:
    """The PostgreSQL URL to test against; fails in CI and skips elsewhere when it is unset."""
    url = os.environ.get(POSTGRES_URL_VARIABLE, "").strip()
    if url:
        return url
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(
            f"{POSTGRES_URL_VARIABLE} is not set although CI=true: .ci/run should have set it "
            "(it starts PostgreSQL and exports the URL); the PostgreSQL store tests must run in CI",
            pytrace=False,
        )
    pytest.skip(
        f"{POSTGRES_URL_VARIABLE} is not set: export it (e.g. "
        "postgresql+asyncpg://orchestrator:orchestrator@127.0.0.1:5432/orchestrator_test, "
        "as .ci/run does) to run the store tests on PostgreSQL"
    )


async def drop_all_tables(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:

            def drop(sync_connection: Connection) -> None:
                existing = MetaData()
                existing.reflect(sync_connection)
                existing.drop_all(sync_connection)

            await connection.run_sync(drop)
    finally:
        await engine.dispose()


def reset_schema(url: str) -> None:
    """Migrate down to base and up to head (alembic runs asyncio.run: call it in a thread).

    A database left by another version of the migrations (one edited in place since, say)
    cannot be downgraded by this one, and tables without their version row cannot be
    upgraded; its tables are then dropped, with a warning, and the downgrade itself is still
    tested by test_migrations_downgrade_to_base_and_back.
    """
    config = alembic_config(url)
    try:
        command.downgrade(config, "base")
        # Tables left without their alembic_version row (a run of other migrations stopped
        # half-way) make the upgrade fail instead: they are dropped the same way.
        command.upgrade(config, "head")
        return
    except (SQLAlchemyError, CommandError) as error:
        warnings.warn(
            f"could not reset the PostgreSQL test schema ({type(error).__name__}: "
            f"{str(error).splitlines()[0]}); dropped all its tables instead",
            stacklevel=1,
        )
        asyncio.run(drop_all_tables(url))
    command.upgrade(config, "head")


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A freshly migrated database on each backend."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        await asyncio.to_thread(upgrade, url)
        return url
    url = postgres_url()
    await asyncio.to_thread(reset_schema, url)
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> Sessions:
    return create_sessionmaker(engine)


@pytest.fixture
async def session(sessions: Sessions) -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        yield session


# Helpers ---------------------------------------------------------------------------------------


def make_job(job_id: str, **fields: Any) -> Job:
    values: dict[str, Any] = {
        "job_id": job_id,
        "name": f"name-{job_id}",
        "image": "trainer:latest",
        "command": ["python", "train.py"],
        "schedule": None,
        "max_retries": 3,
        "retry_count": 0,
        "checkpoint_path": f"/checkpoints/{job_id}",
        "status": JobStatus.PENDING.value,
        "started_at": None,
        "completed_at": None,
        "error_message": None,
        "latest_run_id": None,
        "pending_trigger": None,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return Job(**values)


async def add_jobs(sessions: Sessions, *jobs: Job) -> None:
    async with sessions() as session:
        session.add_all(jobs)
        await session.commit()


async def row(sessions: Sessions, model: type[Base], key: str) -> dict[str, Any] | None:
    """The model's stored row, read through a fresh session (nothing cached), as a dict."""
    (primary_key,) = inspect(model).primary_key
    async with sessions() as session:
        result = await session.execute(select(model.__table__).where(primary_key == key))
        found = result.mappings().one_or_none()
    return dict(found) if found is not None else None


async def job_row(sessions: Sessions, job_id: str) -> dict[str, Any]:
    found = await row(sessions, Job, job_id)
    assert found is not None, f"job {job_id} is gone"
    return found


async def run_row(sessions: Sessions, run_id: str) -> dict[str, Any]:
    found = await row(sessions, Run, run_id)
    assert found is not None, f"run {run_id} is gone"
    return found


def subset(stored: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The stored values of the expected keys (columns added later are not compared)."""
    return {key: stored.get(key, "<missing>") for key in expected}


async def run_ids_of(sessions: Sessions, job_id: str) -> list[str]:
    async with sessions() as session:
        ids = await session.scalars(
            select(Run.run_id).where(Run.job_id == job_id).order_by(Run.run_id)
        )
        return list(ids.all())


# Schema ----------------------------------------------------------------------------------------


def describe_schema(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    tables = set(Base.metadata.tables)
    return {
        "tables": set(inspector.get_table_names()),
        "columns": {
            table: {column["name"]: column["nullable"] for column in inspector.get_columns(table)}
            for table in tables
        },
        "primary_keys": {
            table: inspector.get_pk_constraint(table)["constrained_columns"] for table in tables
        },
        # Indexes declared as such; not the ones backing a UNIQUE constraint or a primary key.
        "indexes": {
            table: {
                index["name"]: (tuple(index["column_names"]), bool(index["unique"]))
                for index in inspector.get_indexes(table)
                if "duplicates_constraint" not in index
                and not str(index["name"]).startswith("sqlite_autoindex")
            }
            for table in tables
        },
        "unique": {
            table: {
                tuple(unique["column_names"]) for unique in inspector.get_unique_constraints(table)
            }
            for table in tables
        },
        "foreign_keys": {
            table: [
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    (fk.get("options") or {}).get("ondelete"),
                )
                for fk in inspector.get_foreign_keys(table)
            ]
            for table in tables
        },
        "version": connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar(),
    }


async def test_migration_creates_tables_and_indexes(engine: AsyncEngine, database_url: str) -> None:
    async with engine.connect() as connection:
        schema = await connection.run_sync(describe_schema)

    assert {"jobs", "runs", "issued_job_ids", "schedule_syncs", "alembic_version"} <= schema[
        "tables"
    ]
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert schema["version"] == head

    # The migration builds exactly what the models declare: columns, keys, indexes.
    for table in Base.metadata.sorted_tables:
        assert schema["columns"][table.name] == {c.name: c.nullable for c in table.columns}, (
            table.name
        )
        assert schema["primary_keys"][table.name] == [c.name for c in table.primary_key], table.name
        declared = {
            index.name: (tuple(c.name for c in index.columns), bool(index.unique))
            for index in table.indexes
        }
        assert schema["indexes"][table.name] == declared, table.name

    # What the queries of jobs.store rely on, whatever else the indexes carry.
    job_indexes = list(schema["indexes"]["jobs"].values())
    assert any(columns[0] == "created_at" for columns, _ in job_indexes), job_indexes
    assert any(columns[:2] == ("status", "created_at") for columns, _ in job_indexes), job_indexes
    assert any(
        columns[:2] == ("job_id", "started_at") for columns, _ in schema["indexes"]["runs"].values()
    )
    assert schema["primary_keys"]["jobs"] == ["job_id"]
    assert schema["primary_keys"]["runs"] == ["run_id"]
    assert ("name",) in schema["unique"]["jobs"]
    assert schema["foreign_keys"]["runs"] == [(("job_id",), "jobs", ("job_id",), "CASCADE")]


def table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrations_downgrade_to_base_and_back(
    engine: AsyncEngine, database_url: str
) -> None:
    config = alembic_config(database_url)
    model_tables = set(Base.metadata.tables)

    await asyncio.to_thread(command.downgrade, config, "base")
    async with engine.connect() as connection:
        left = await connection.run_sync(table_names)
        assert left & model_tables == set()
        assert left <= {"alembic_version"}
        version = await connection.exec_driver_sql("SELECT count(*) FROM alembic_version")
        assert version.scalar() == 0

    await asyncio.to_thread(command.upgrade, config, "head")
    async with engine.connect() as connection:
        assert model_tables <= await connection.run_sync(table_names)


# Job ids ---------------------------------------------------------------------------------------


async def test_issue_job_id_commits_a_fresh_id(sessions: Sessions) -> None:
    async with sessions() as session:
        first = await job_store.issue_job_id(session)
        second = await job_store.issue_job_id(session)

    assert re.fullmatch(r"train-[0-9a-f]{8}", first), first
    assert re.fullmatch(r"train-[0-9a-f]{8}", second), second
    assert first != second
    # Committed: visible from another session, with the moment it was issued.
    for job_id in (first, second):
        issued = await row(sessions, IssuedJobId, job_id)
        assert issued is not None
        assert issued["issued_at"].tzinfo == UTC
        assert abs(datetime.now(UTC) - issued["issued_at"]) < timedelta(minutes=1)


async def test_issue_job_id_draws_again_on_collision(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with sessions() as session:
        taken = await job_store.issue_job_id(session)

    draws = iter([taken, taken, "train-0000beef"])
    monkeypatch.setattr(job_store, "draw_job_id", lambda: next(draws))
    async with sessions() as session:
        assert await job_store.issue_job_id(session) == "train-0000beef"

    monkeypatch.setattr(job_store, "draw_job_id", lambda: taken)
    async with sessions() as session:
        with pytest.raises(RuntimeError, match="could not draw an unused job id"):
            await job_store.issue_job_id(session)

    async with sessions() as session:
        issued = await session.scalars(select(IssuedJobId.job_id).order_by(IssuedJobId.job_id))
        assert issued.all() == sorted([taken, "train-0000beef"])


# Listing and counting ----------------------------------------------------------------------------

# Inserted in this (shuffled) order. Two share created_at and the smaller id is inserted last,
# so only the job_id DESC tie-break (not insertion order) puts 0000000b first.
LISTED = [
    ("train-00000003", 3, JobStatus.COMPLETED),
    ("train-0000000b", 5, JobStatus.PENDING),
    ("train-00000001", 1, JobStatus.COMPLETED),
    ("train-00000005", 6, JobStatus.COMPLETED),
    ("train-00000004", 4, JobStatus.RUNNING),
    ("train-0000000a", 5, JobStatus.COMPLETED),
    ("train-00000002", 2, JobStatus.FAILED),
]
NEWEST_FIRST = [
    "train-00000005",
    "train-0000000b",
    "train-0000000a",
    "train-00000004",
    "train-00000003",
    "train-00000002",
    "train-00000001",
]


async def add_listed_jobs(sessions: Sessions) -> None:
    await add_jobs(
        sessions,
        *(
            make_job(job_id, status=status.value, created_at=T0 + timedelta(minutes=minutes))
            for job_id, minutes, status in LISTED
        ),
    )


async def listed(
    session: AsyncSession, status: JobStatus | None, page: int, page_size: int
) -> tuple[list[str], int]:
    rows, total = await job_store.list_jobs(session, status, page, page_size)
    return [job.job_id for job in rows], total


async def test_list_jobs_pages_newest_first(sessions: Sessions, session: AsyncSession) -> None:
    assert await listed(session, None, 1, 50) == ([], 0)
    await add_listed_jobs(sessions)

    assert await listed(session, None, 1, 50) == (NEWEST_FIRST, 7)
    assert await listed(session, None, 1, 3) == (NEWEST_FIRST[0:3], 7)
    assert await listed(session, None, 2, 3) == (NEWEST_FIRST[3:6], 7)
    assert await listed(session, None, 3, 3) == (NEWEST_FIRST[6:], 7)
    assert await listed(session, None, 4, 3) == ([], 7)

    rows, _ = await job_store.list_jobs(session, None, 1, 1)
    assert isinstance(rows[0], Job)
    assert rows[0].created_at == T0 + timedelta(minutes=6)
    assert rows[0].command == ["python", "train.py"]


async def test_list_jobs_filters_by_status(sessions: Sessions, session: AsyncSession) -> None:
    await add_listed_jobs(sessions)
    completed = ["train-00000005", "train-0000000a", "train-00000003", "train-00000001"]

    assert await listed(session, JobStatus.COMPLETED, 1, 50) == (completed, 4)
    assert await listed(session, JobStatus.COMPLETED, 1, 3) == (completed[:3], 4)
    assert await listed(session, JobStatus.COMPLETED, 2, 3) == (completed[3:], 4)
    assert await listed(session, JobStatus.COMPLETED, 3, 3) == ([], 4)
    assert await listed(session, JobStatus.PENDING, 1, 50) == (["train-0000000b"], 1)
    assert await listed(session, JobStatus.FAILED, 1, 50) == (["train-00000002"], 1)
    assert await listed(session, JobStatus.CANCELLED, 1, 50) == ([], 0)


async def test_count_by_status_has_every_status(sessions: Sessions, session: AsyncSession) -> None:
    empty = await job_store.count_by_status(session)
    assert empty == dict.fromkeys(JobStatus, 0)

    await add_listed_jobs(sessions)
    counts = await job_store.count_by_status(session)
    assert set(counts) == set(JobStatus)
    assert all(isinstance(key, JobStatus) for key in counts)
    assert counts == {
        JobStatus.PENDING: 1,
        JobStatus.QUEUED: 0,
        JobStatus.RUNNING: 1,
        JobStatus.RETRYING: 0,
        JobStatus.COMPLETED: 4,
        JobStatus.FAILED: 1,
        JobStatus.CANCELLED: 0,
    }
    assert sum(counts.values()) == len(LISTED)


async def test_duplicate_name_is_rejected_on_commit(sessions: Sessions) -> None:
    await add_jobs(sessions, make_job("train-00000001", name="resnet"))

    async with sessions() as session:
        session.add(make_job("train-00000002", name="resnet"))
        with pytest.raises(IntegrityError):
            await session.commit()
        await session.rollback()
        # The session is usable again and the first job is untouched.
        assert await job_store.name_taken(session, "resnet")
        assert not await job_store.name_taken(session, "resnet", except_job="train-00000001")
        assert not await job_store.name_taken(session, "other")

    assert await row(sessions, Job, "train-00000002") is None
    assert (await job_row(sessions, "train-00000001"))["name"] == "resnet"


# Runs ------------------------------------------------------------------------------------------

JOB = "train-0000a001"


async def test_start_run_creates_the_run_once(sessions: Sessions) -> None:
    await add_jobs(
        sessions,
        make_job(
            JOB,
            status=JobStatus.FAILED.value,
            retry_count=2,
            error_message="old failure",
            started_at=T0,
            completed_at=T0 + timedelta(minutes=1),
            pending_trigger="manual",
        ),
    )
    t1 = T0 + timedelta(hours=1)

    async with sessions() as session:
        job, run = await run_store.start_run(session, JOB, "wf-1", "exec-1", t1, "schedule")
    assert (job.job_id, run.run_id) == (JOB, "wf-1")

    assert await run_ids_of(sessions, JOB) == ["wf-1"]
    first_run = await run_row(sessions, "wf-1")
    expected_run = {
        "run_id": "wf-1",
        "execution_id": "exec-1",
        "job_id": JOB,
        "trigger": "manual",  # the job's pending trigger, consumed
        "status": "running",
        "attempt": 1,
        "retry_count": 0,
        "exit_code": None,
        "error_message": None,
        "started_at": t1,
        "completed_at": None,
        "updated_at": t1,
    }
    assert subset(first_run, expected_run) == expected_run
    job_after = await job_row(sessions, JOB)
    assert job_after["latest_run_id"] == "wf-1"
    assert job_after["status"] == "running"
    assert job_after["started_at"] == t1
    assert job_after["completed_at"] is None
    assert job_after["retry_count"] == 0
    assert job_after["error_message"] is None
    assert job_after["pending_trigger"] is None

    # The run moves on; the activity that started it is then retried: nothing is reset.
    async with sessions() as session:
        assert await run_store.record_run_status(
            session,
            job_id=JOB,
            run_id="wf-1",
            status=JobStatus.RETRYING,
            attempt=2,
            retry_count=1,
            at=t1 + timedelta(minutes=5),
            error_message="exit 1",
            exit_code=1,
        )
    run_before, job_before = await run_row(sessions, "wf-1"), await job_row(sessions, JOB)
    async with sessions() as session:
        _, again = await run_store.start_run(
            session, JOB, "wf-1", "exec-1", t1 + timedelta(minutes=9), "schedule"
        )
    assert again.started_at == t1
    assert await run_ids_of(sessions, JOB) == ["wf-1"]
    assert await run_row(sessions, "wf-1") == run_before
    assert await job_row(sessions, JOB) == job_before
    assert job_before["status"] == "retrying"


async def test_start_run_with_a_new_execution_replaces_the_record(sessions: Sessions) -> None:
    await add_jobs(sessions, make_job(JOB))
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    async with sessions() as session:
        await run_store.start_run(session, JOB, "wf-1", "exec-1", t1, "manual")
        await run_store.record_run_status(
            session,
            job_id=JOB,
            run_id="wf-1",
            status=JobStatus.COMPLETED,
            attempt=1,
            retry_count=0,
            at=t1 + timedelta(minutes=3),
            error_message=None,
            exit_code=0,
        )

    # A later execution reuses the closed run's workflow id (e.g. the next scheduled firing).
    async with sessions() as session:
        await run_store.start_run(session, JOB, "wf-1", "exec-2", t2, "schedule")

    assert await run_ids_of(sessions, JOB) == ["wf-1"]
    replaced = await run_row(sessions, "wf-1")
    expected_run = {
        "run_id": "wf-1",
        "execution_id": "exec-2",
        "job_id": JOB,
        "trigger": "schedule",
        "status": "running",
        "attempt": 1,
        "retry_count": 0,
        "exit_code": None,
        "error_message": None,
        "started_at": t2,
        "completed_at": None,
        "updated_at": t2,
    }
    assert subset(replaced, expected_run) == expected_run
    job = await job_row(sessions, JOB)
    assert (job["status"], job["latest_run_id"], job["started_at"]) == ("running", "wf-1", t2)
    assert job["completed_at"] is None


async def test_start_run_for_a_missing_job(session: AsyncSession) -> None:
    with pytest.raises(JobNotFound):
        await run_store.start_run(session, "train-deadbeef", "wf-1", "exec-1", T0, "schedule")


async def test_record_run_status_applies_a_transition_once(sessions: Sessions) -> None:
    await add_jobs(sessions, make_job(JOB))
    t1 = T0 + timedelta(hours=1)
    async with sessions() as session:
        await run_store.start_run(session, JOB, "wf-1", "exec-1", t1, "schedule")

    failed_at = t1 + timedelta(minutes=7)
    update_fields: dict[str, Any] = {
        "job_id": JOB,
        "run_id": "wf-1",
        "status": JobStatus.FAILED,
        "attempt": 3,
        "retry_count": 2,
        "at": failed_at,
        "error_message": "exit code 2",
        "exit_code": 2,
    }
    async with sessions() as session:
        assert await run_store.record_run_status(session, **update_fields) is True

    run = await run_row(sessions, "wf-1")
    assert run["status"] == "failed"
    assert (run["attempt"], run["retry_count"], run["exit_code"]) == (3, 2, 2)
    assert run["error_message"] == "exit code 2"
    assert run["completed_at"] == failed_at
    assert run["updated_at"] == failed_at
    assert run["started_at"] == t1
    job = await job_row(sessions, JOB)
    assert job["status"] == "failed"
    assert job["retry_count"] == 2
    assert job["error_message"] == "exit code 2"
    assert job["completed_at"] == failed_at
    assert job["updated_at"] == failed_at
    assert job["started_at"] == t1

    # A retried activity applies the same update again: the rows do not change at all.
    async with sessions() as session:
        assert await run_store.record_run_status(session, **update_fields) is True
    assert await run_row(sessions, "wf-1") == run
    assert await job_row(sessions, JOB) == job

    # A non-final status clears completed_at; an update without exit code keeps the last one.
    async with sessions() as session:
        assert await run_store.record_run_status(
            session, **{**update_fields, "status": JobStatus.RETRYING, "exit_code": None}
        )
    run = await run_row(sessions, "wf-1")
    assert (run["status"], run["completed_at"], run["exit_code"]) == ("retrying", None, 2)
    job = await job_row(sessions, JOB)
    assert (job["status"], job["completed_at"]) == ("retrying", None)


async def test_record_run_status_of_an_older_run_leaves_the_job(sessions: Sessions) -> None:
    await add_jobs(sessions, make_job(JOB))
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    async with sessions() as session:
        await run_store.start_run(session, JOB, "wf-1", "exec-1", t1, "schedule")
        await run_store.start_run(session, JOB, "wf-2", "exec-2", t2, "manual")
    job_before = await job_row(sessions, JOB)
    assert job_before["latest_run_id"] == "wf-2"

    cancelled_at = t2 + timedelta(minutes=1)
    async with sessions() as session:
        assert await run_store.record_run_status(
            session,
            job_id=JOB,
            run_id="wf-1",
            status=JobStatus.CANCELLED,
            attempt=1,
            retry_count=0,
            at=cancelled_at,
            error_message="cancelled",
            exit_code=None,
        )

    old_run = await run_row(sessions, "wf-1")
    assert (old_run["status"], old_run["completed_at"]) == ("cancelled", cancelled_at)
    assert old_run["error_message"] == "cancelled"
    assert (await run_row(sessions, "wf-2"))["status"] == "running"
    assert await job_row(sessions, JOB) == job_before


async def test_record_run_status_of_a_missing_run(sessions: Sessions) -> None:
    await add_jobs(sessions, make_job(JOB), make_job("train-0000a002"))
    async with sessions() as session:
        await run_store.start_run(session, JOB, "wf-1", "exec-1", T0, "schedule")
    run_before, job_before = await run_row(sessions, "wf-1"), await job_row(sessions, JOB)

    fields: dict[str, Any] = {
        "status": JobStatus.COMPLETED,
        "attempt": 1,
        "retry_count": 0,
        "at": T0 + timedelta(minutes=1),
        "error_message": None,
        "exit_code": 0,
    }
    async with sessions() as session:
        assert await run_store.record_run_status(
            session, job_id=JOB, run_id="no-such", **fields
        ) is (False)
        # A run of another job is not this job's run.
        assert (
            await run_store.record_run_status(
                session, job_id="train-0000a002", run_id="wf-1", **fields
            )
            is False
        )
    assert await run_row(sessions, "wf-1") == run_before
    assert await job_row(sessions, JOB) == job_before
    assert await row(sessions, Run, "no-such") is None


async def test_delete_job_rows_removes_the_job_and_its_runs(sessions: Sessions) -> None:
    other = "train-0000a002"
    await add_jobs(sessions, make_job(JOB), make_job(other))
    async with sessions() as session:
        await run_store.start_run(session, JOB, "wf-1", "exec-1", T0, "schedule")
        await run_store.start_run(session, JOB, "wf-2", "exec-2", T0 + timedelta(hours=1), "manual")
        await run_store.start_run(session, other, "wf-3", "exec-3", T0, "schedule")
    assert await run_ids_of(sessions, JOB) == ["wf-1", "wf-2"]

    async with sessions() as session:
        await job_store.delete_job_rows(session, JOB)
        await session.commit()

    assert await row(sessions, Job, JOB) is None
    assert await run_ids_of(sessions, JOB) == []
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Run)) == 1
    assert (await job_row(sessions, other))["latest_run_id"] == "wf-3"
    assert await run_ids_of(sessions, other) == ["wf-3"]


# The schedule-sync journal -----------------------------------------------------------------------


async def test_schedule_change_journal(sessions: Sessions) -> None:
    async with sessions() as session:
        await journal.journal_schedule_change(session, "train-0000c001")
        await journal.journal_schedule_change(session, "train-0000c002")
        # Committed: an entry survives the session that wrote it.
    async with sessions() as session:
        assert sorted(await journal.pending_schedule_changes(session, timedelta(0))) == [
            "train-0000c001",
            "train-0000c002",
        ]
        # Both are fresh: none is older than a minute.
        assert await journal.pending_schedule_changes(session, timedelta(minutes=1)) == []

        # Age one entry as if a crash left it behind two hours ago.
        await session.execute(
            update(ScheduleSync)
            .where(ScheduleSync.job_id == "train-0000c001")
            .values(requested_at=datetime.now(UTC) - timedelta(hours=2))
        )
        await session.commit()
        assert await journal.pending_schedule_changes(session, timedelta(hours=1)) == [
            "train-0000c001"
        ]
        assert await journal.pending_schedule_changes(session, timedelta(hours=3)) == []

        # Journaling the same job again refreshes its one entry.
        await journal.journal_schedule_change(session, "train-0000c001")
        assert await journal.pending_schedule_changes(session, timedelta(hours=1)) == []
        assert await session.scalar(select(func.count()).select_from(ScheduleSync)) == 2

        await journal.clear_schedule_change(session, "train-0000c001")
        await journal.clear_schedule_change(session, "train-0000ffff")  # nothing to clear: no-op
    async with sessions() as session:
        assert await journal.pending_schedule_changes(session, timedelta(0)) == ["train-0000c002"]
    entry = await row(sessions, ScheduleSync, "train-0000c002")
    assert entry is not None
    assert entry["requested_at"].tzinfo == UTC


# Timestamps ------------------------------------------------------------------------------------


async def test_timestamps_come_back_as_aware_utc(sessions: Sessions, engine: AsyncEngine) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    created = datetime(2025, 3, 1, 17, 30, 0, 123456, tzinfo=india)  # 12:00:00.123456 UTC
    # Earlier in UTC although its wall clock is later than T0's 12:00.
    earlier = datetime(2025, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=2)))  # 11:00 UTC
    await add_jobs(
        sessions,
        make_job("train-0000d001", created_at=created, updated_at=created, started_at=created),
        make_job("train-0000d002", created_at=earlier, updated_at=earlier),
    )
    async with sessions() as session:
        await run_store.start_run(session, "train-0000d002", "wf-1", "exec-1", earlier, "schedule")
        await job_store.issue_job_id(session)

    async with sessions() as session:
        if engine.dialect.name == "postgresql":
            # Whatever the connection's time zone, values come back in UTC.
            await session.execute(text("SET TIME ZONE 'America/Los_Angeles'"))
        job = await session.get(Job, "train-0000d001")
        run = await session.get(Run, "wf-1")
        issued_at = await session.scalar(select(IssuedJobId.issued_at))
        assert job is not None and run is not None and issued_at is not None
        values = [
            job.created_at,
            job.updated_at,
            job.started_at,
            run.started_at,
            run.updated_at,
            issued_at,
        ]
        for value in values:
            assert isinstance(value, datetime)
            assert value.tzinfo == UTC, value
            assert value.utcoffset() == timedelta(0)
        assert job.created_at == created
        assert job.created_at.isoformat() == "2025-03-01T12:00:00.123456+00:00"
        assert run.started_at == earlier
        assert run.started_at.hour == 11

        # Ordered by the instant, not by the wall clock each value was written with.
        rows, _ = await job_store.list_jobs(session, None, 1, 10)
        assert [j.job_id for j in rows] == ["train-0000d001", "train-0000d002"]

    async with sessions() as session:
        session.add(make_job("train-0000d003", created_at=datetime(2025, 3, 1, 12, 0)))
        with pytest.raises(StatementError, match="naive datetime"):
            await session.commit()


# Checkpoints -----------------------------------------------------------------------------------

THREE_GIB = 3 * 1024**3


async def record(sessions: Sessions, path: str, sha256: str, **fields: Any) -> bool:
    values: dict[str, Any] = {
        "job_id": JOB,
        "run_id": "wf-1",
        "attempt": 1,
        "path": path,
        "step": None,
        "size_bytes": 10,
        "sha256": sha256,
        "at": T0,
    }
    values.update(fields)
    async with sessions() as session:
        return await checkpoint_store.record_checkpoint(session, **values)


async def test_checkpoint_sizes_are_64_bit(sessions: Sessions, engine: AsyncEngine) -> None:
    await add_jobs(sessions, make_job(JOB))
    sizes = {"ckpt-3gib.pt": THREE_GIB, "ckpt-5tib.pt": 5 * 1024**4, "ckpt-2gib.pt": 2**31}
    for path, size in sizes.items():
        assert await record(sessions, path, path.ljust(64, "0"), size_bytes=size)

    async with sessions() as session:
        listed = await checkpoint_store.list_checkpoints(session, JOB)
    assert {c.path: c.size_bytes for c in listed} == sizes

    def size_type(connection: Connection) -> Any:
        columns = inspect(connection).get_columns("checkpoints")
        return next(c["type"] for c in columns if c["name"] == "size_bytes")

    async with engine.connect() as connection:
        assert isinstance(await connection.run_sync(size_type), BigInteger)


async def test_known_sha256_needs_the_same_job_path_size_and_mtime(sessions: Sessions) -> None:
    other = "train-0000a002"
    await add_jobs(sessions, make_job(JOB), make_job(other))
    sha_a, sha_b = "a" * 64, "b" * 64
    assert await record(sessions, "big.pt", sha_a, size_bytes=THREE_GIB, mtime_ns=1_000)
    assert await record(sessions, "unkeyed.pt", sha_b, mtime_ns=None)

    async def known(job_id: str, path: str, size: int, mtime_ns: int) -> str | None:
        async with sessions() as session:
            return await checkpoint_store.known_sha256(
                session, job_id=job_id, path=path, size_bytes=size, mtime_ns=mtime_ns
            )

    assert await known(JOB, "big.pt", THREE_GIB, 1_000) == sha_a
    assert await known(JOB, "big.pt", THREE_GIB, 1_001) is None  # touched or rewritten
    assert await known(JOB, "big.pt", THREE_GIB + 1, 1_000) is None  # grown
    assert await known(JOB, "other.pt", THREE_GIB, 1_000) is None
    assert await known(other, "big.pt", THREE_GIB, 1_000) is None
    assert await known(JOB, "unkeyed.pt", 10, 0) is None

    # The same content seen at a new time (touched): still one record, now at that time.
    assert not await record(sessions, "big.pt", sha_a, size_bytes=THREE_GIB, mtime_ns=2_000)
    assert await known(JOB, "big.pt", THREE_GIB, 2_000) == sha_a
    assert await known(JOB, "big.pt", THREE_GIB, 1_000) is None
    # Seen while it changed (no time): the record keeps the time it was hashed at.
    assert not await record(sessions, "big.pt", sha_a, size_bytes=THREE_GIB, mtime_ns=None)
    assert await known(JOB, "big.pt", THREE_GIB, 2_000) == sha_a

    # New content at the same size and time as an older record: the newest record wins.
    assert await record(sessions, "big.pt", sha_b, size_bytes=THREE_GIB, mtime_ns=2_000)
    assert await known(JOB, "big.pt", THREE_GIB, 2_000) == sha_b
    async with sessions() as session:
        assert len(await checkpoint_store.list_checkpoints(session, JOB)) == 3


async def test_migration_0002_keeps_recorded_checkpoints(
    engine: AsyncEngine, database_url: str
) -> None:
    config = alembic_config(database_url)
    await asyncio.to_thread(command.downgrade, config, "0001")
    insert_job = text(
        "INSERT INTO jobs (job_id, name, image, command, timezone, overlap_policy, paused, "
        "max_retries, retry_count, checkpoint_path, env, secret_env, resume_policy, status, "
        "created_at, updated_at) VALUES ('train-0000e001', 'old', 'img', '[]', 'UTC', 'skip', "
        "false, 0, 0, '/c', '{}', '[]', 'retries', 'completed', :at, :at)"
    )
    insert_checkpoint = text(
        "INSERT INTO checkpoints (job_id, run_id, attempt, path, step, size_bytes, sha256, "
        "created_at) VALUES ('train-0000e001', 'wf-1', 1, 'ckpt-1.pt', 1, :size, :sha, :at)"
    )
    async with engine.begin() as connection:
        await connection.execute(insert_job, {"at": T0})
        await connection.execute(insert_checkpoint, {"size": 1024, "sha": "c" * 64, "at": T0})
    if engine.dialect.name == "postgresql":
        # What 0002 fixes: before it, PostgreSQL refused any checkpoint of 2 GiB or more.
        with pytest.raises(SQLAlchemyError, match="out of (int32 )?range"):
            async with engine.begin() as connection:
                await connection.execute(
                    insert_checkpoint, {"size": THREE_GIB, "sha": "d" * 64, "at": T0}
                )

    await asyncio.to_thread(command.upgrade, config, "head")
    sessions = create_sessionmaker(engine)
    async with sessions() as session:
        (kept,) = await checkpoint_store.list_checkpoints(session, "train-0000e001")
        kept_values = (kept.path, kept.step, kept.size_bytes, kept.sha256)
        assert kept_values == ("ckpt-1.pt", 1, 1024, "c" * 64)
        assert kept.mtime_ns is None  # hashed again once, then cached
    # Still recorded once per job, path and content.
    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(insert_checkpoint, {"size": 1024, "sha": "c" * 64, "at": T0})
    async with sessions() as session:
        assert await checkpoint_store.record_checkpoint(
            session,
            job_id="train-0000e001",
            run_id="wf-2",
            attempt=1,
            path="ckpt-2.pt",
            step=2,
            size_bytes=THREE_GIB,
            sha256="d" * 64,
            at=T0,
            mtime_ns=1_700_000_000_123_456_789,
        )
        latest = await checkpoint_store.latest_checkpoint(session, "train-0000e001")
        assert latest is not None
        assert (latest.size_bytes, latest.mtime_ns) == (THREE_GIB, 1_700_000_000_123_456_789)

    # Back to 0001: sizes that 32 bits cannot hold are capped, no checkpoint is dropped.
    await asyncio.to_thread(command.downgrade, config, "0001")
    async with engine.connect() as connection:
        sizes = await connection.execute(
            text("SELECT path, size_bytes FROM checkpoints ORDER BY path")
        )
        assert sizes.all() == [("ckpt-1.pt", 1024), ("ckpt-2.pt", 2**31 - 1)]
