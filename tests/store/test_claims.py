"""The claim of a job's one active run, on both backends: one winner, released by its owner."""

from __future__ import annotations

import asyncio

from store import claims
from store import runs as run_store
from store.models import Job, utcnow
from tests.store import test_store as store
from tests.store.test_store import Sessions, add_jobs, make_job
from workflows.models import JobStatus

# The store tests' fixtures: a freshly migrated SQLite file, and PostgreSQL (TEST_POSTGRES_URL).
database_url = store.database_url
engine = store.engine
sessions = store.sessions


async def claim_from_own_session(sessions: Sessions, job_id: str, run_id: str) -> bool:
    async with sessions() as session:
        return await claims.claim(session, job_id, run_id)


async def test_of_ten_concurrent_claims_one_wins(sessions: Sessions) -> None:
    await add_jobs(sessions, make_job("train-0000c1a1"))
    won = await asyncio.gather(
        *(claim_from_own_session(sessions, "train-0000c1a1", f"run-{i}") for i in range(10))
    )
    assert won.count(True) == 1
    winner = f"run-{won.index(True)}"
    async with sessions() as session:
        job = await session.get(Job, "train-0000c1a1")
        assert job is not None and job.active_run_id == winner and job.claimed_at is not None
        assert claims.has_active_run(job)
    # Claiming again with the winner (a retried activity) succeeds; with another run, not.
    assert await claim_from_own_session(sessions, "train-0000c1a1", winner)
    assert not await claim_from_own_session(sessions, "train-0000c1a1", "run-late")


async def test_only_the_claims_own_run_releases_it(sessions: Sessions) -> None:
    await add_jobs(sessions, make_job("train-0000c1a2"))
    assert await claim_from_own_session(sessions, "train-0000c1a2", "run-a")
    async with sessions() as session:
        assert not await claims.release(session, "train-0000c1a2", "run-b")
        await session.commit()
    assert not await claim_from_own_session(sessions, "train-0000c1a2", "run-b")
    async with sessions() as session:
        assert await claims.release(session, "train-0000c1a2", "run-a")
        await session.commit()
    assert await claim_from_own_session(sessions, "train-0000c1a2", "run-b")


async def test_a_final_status_releases_the_claim_of_its_run_only(sessions: Sessions) -> None:
    await add_jobs(sessions, make_job("train-0000c1a3"))
    assert await claim_from_own_session(sessions, "train-0000c1a3", "run-owner")
    async with sessions() as session:
        job, _ = await run_store.start_run(
            session, "train-0000c1a3", "run-owner", "exec-1", utcnow(), "manual"
        )
        await run_store.start_run(
            session, "train-0000c1a3", "run-overlap", "exec-2", utcnow(), "manual"
        )
    for run_id, expected in (("run-overlap", "run-owner"), ("run-owner", None)):
        async with sessions() as session:
            await run_store.record_run_status(
                session,
                job_id="train-0000c1a3",
                run_id=run_id,
                status=JobStatus.COMPLETED,
                attempt=1,
                retry_count=0,
                at=utcnow(),
                error_message=None,
                exit_code=0,
            )
        async with sessions() as session:
            job = await session.get(Job, "train-0000c1a3")
            assert job is not None and job.active_run_id == expected, run_id


async def test_a_run_from_before_claims_keeps_its_job_active(sessions: Sessions) -> None:
    await add_jobs(sessions, make_job("train-0000c1a4", status=JobStatus.RUNNING.value))
    assert not await claim_from_own_session(sessions, "train-0000c1a4", "run-new")
    async with sessions() as session:
        job = await session.get(Job, "train-0000c1a4")
        assert job is not None and claims.has_active_run(job) and job.active_run_id is None
