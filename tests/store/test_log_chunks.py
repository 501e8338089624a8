"""Attempts' output in SQL on both backends: a mirror of the log file, chunk by chunk."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import jobs as job_store
from store import log_chunks
from store.log_chunks import CHUNK_BYTES
from store.models import LogChunk
from tests.store.test_metric_history import JOB, RUN, sessions

__all__ = ["sessions"]  # the fixture: a migrated database per backend, one job and one run

Sessions = async_sessionmaker[AsyncSession]


async def ship(sessions: Sessions, offset: int, data: bytes, attempt: int = 1) -> None:
    async with sessions() as session:
        await log_chunks.replace_from(
            session, job_id=JOB, run_id=RUN, attempt=attempt, offset=offset, data=data
        )


async def stored(sessions: Sessions, attempt: int = 1) -> bytes:
    async with sessions() as session:
        return await log_chunks.read_from(session, RUN, attempt, 0)


async def chunk_starts(sessions: Sessions) -> list[int]:
    async with sessions() as session:
        rows = await session.scalars(select(LogChunk.start).order_by(LogChunk.start))
        return list(rows)


async def test_appends_fill_whole_chunks_whatever_the_pieces(sessions: Sessions) -> None:
    file = bytearray()
    for number in range(40):
        piece = f"line {number} ".encode() * 2_000 + b"\n"  # ~20 KB, not chunk-aligned
        await ship(sessions, len(file), piece)
        file += piece
    assert await stored(sessions) == bytes(file)
    # Every chunk starts at a multiple of the chunk size and all but the last are full.
    starts = await chunk_starts(sessions)
    assert starts == list(range(0, len(file), CHUNK_BYTES))
    async with sessions() as session:
        assert await log_chunks.stored_size(session, RUN, 1) == len(file)
        assert await log_chunks.read_from(session, RUN, 1, 300_000) == bytes(file[300_000:])


async def test_a_cut_back_file_is_mirrored_and_shipping_again_changes_nothing(
    sessions: Sessions,
) -> None:
    head = b"h" * (CHUNK_BYTES + 10)
    tail = b"t" * (2 * CHUNK_BYTES)
    await ship(sessions, 0, head + tail)
    # The bounded log cut its newest part back to the end of its head and wrote anew.
    await ship(sessions, len(head), b"")
    assert await stored(sessions) == head
    await ship(sessions, len(head), b"newest\n")
    await ship(sessions, len(head), b"newest\n")  # a retried shipping: idempotent
    assert await stored(sessions) == head + b"newest\n"
    assert await chunk_starts(sessions) == [0, CHUNK_BYTES]


async def test_last_lines_read_backwards_over_chunks(sessions: Sessions) -> None:
    lines = [f"{n:06d} " + "x" * 9_000 for n in range(100)]  # ~900 KB: four chunks
    await ship(sessions, 0, "".join(f"{line}\n" for line in lines).encode())
    async with sessions() as session:
        assert await log_chunks.last_lines(session, RUN, 1, 3) == lines[-3:]
        assert await log_chunks.last_lines(session, RUN, 1, 60) == lines[-60:]
        assert await log_chunks.last_lines(session, RUN, 1, 1_000) == lines
        assert await log_chunks.last_lines(session, RUN, 2, 5) == []


async def test_attempts_are_kept_apart_and_deleted_with_their_job(sessions: Sessions) -> None:
    await ship(sessions, 0, b"first attempt\n", attempt=1)
    await ship(sessions, 0, b"second attempt\n", attempt=2)
    async with sessions() as session:
        assert await log_chunks.attempts_with_logs(session, RUN) == [1, 2]
    assert await stored(sessions, 2) == b"second attempt\n"
    async with sessions() as session:
        await job_store.delete_job_rows(session, JOB)
        await session.commit()
        assert await session.scalar(select(func.count()).select_from(LogChunk)) == 0
