"""Attempts' output in SQL: the worker mirrors each attempt's log file here in chunks, and
every API replica reads tails and follows from here, sharing no disk with the workers.

An attempt's chunks mirror its file: the chunk at ``start`` holds the file's bytes from
``start``, starts are multiples of :data:`CHUNK_BYTES`, and every chunk but the last is full.
The worker tells what changed as "the file from ``offset`` on is now ``data``" (a bounded log
may cut its newest part back), which :func:`replace_from` applies in one transaction: the
chunk holding ``offset`` keeps its bytes before it, the chunks after are replaced.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import LogChunk

CHUNK_BYTES = 256 * 1024


async def replace_from(
    session: AsyncSession, *, job_id: str, run_id: str, attempt: int, offset: int, data: bytes
) -> None:
    """Make the attempt's stored log end with ``data`` from byte ``offset`` on, and commit.

    Idempotent: applying the same change again leaves the same chunks.
    """
    first = offset - offset % CHUNK_BYTES
    kept = b""
    if first < offset:
        held = await session.get(LogChunk, (run_id, attempt, first))
        # A chunk missing before offset (the worker shipped from the middle): pad nothing,
        # the reader sees what exists; normally the chunk is there.
        kept = held.data[: offset - first] if held is not None else b""
        if len(kept) < offset - first:
            first = offset
            kept = b""
    await session.execute(
        delete(LogChunk).where(
            LogChunk.run_id == run_id, LogChunk.attempt == attempt, LogChunk.start >= first
        )
    )
    await session.flush()
    payload = kept + data
    position = first
    while payload:
        size = CHUNK_BYTES - position % CHUNK_BYTES
        session.add(
            LogChunk(
                run_id=run_id,
                attempt=attempt,
                start=position,
                job_id=job_id,
                data=payload[:size],
            )
        )
        payload = payload[size:]
        position += size
    await session.commit()


async def attempts_with_logs(session: AsyncSession, run_id: str) -> list[int]:
    """The attempts of a run that shipped output, in order."""
    rows = await session.scalars(
        select(LogChunk.attempt)
        .where(LogChunk.run_id == run_id)
        .distinct()
        .order_by(LogChunk.attempt)
    )
    return list(rows)


async def stored_size(session: AsyncSession, run_id: str, attempt: int) -> int:
    """How many bytes of the attempt's log are stored (the end of its last chunk)."""
    last = await session.scalar(
        select(LogChunk.start + func.length(LogChunk.data))
        .where(LogChunk.run_id == run_id, LogChunk.attempt == attempt)
        .order_by(LogChunk.start.desc())
        .limit(1)
    )
    return int(last or 0)


async def read_from(
    session: AsyncSession, run_id: str, attempt: int, offset: int, limit: int | None = None
) -> bytes:
    """The stored log from byte ``offset`` on (at most about ``limit`` bytes)."""
    first = offset - offset % CHUNK_BYTES
    query = (
        select(LogChunk.start, LogChunk.data)
        .where(LogChunk.run_id == run_id, LogChunk.attempt == attempt, LogChunk.start >= first)
        .order_by(LogChunk.start)
    )
    if limit is not None:
        query = query.limit(limit // CHUNK_BYTES + 2)
    parts = []
    for start, data in (await session.execute(query)).all():
        parts.append(data[max(0, offset - start) :])
    return b"".join(parts)


async def last_lines(session: AsyncSession, run_id: str, attempt: int, count: int) -> list[str]:
    """The attempt's last ``count`` lines, read backwards a chunk at a time."""
    if count <= 0:
        return []
    data = b""
    before: int | None = None
    while data.count(b"\n") <= count:
        query = (
            select(LogChunk.start, LogChunk.data)
            .where(LogChunk.run_id == run_id, LogChunk.attempt == attempt)
            .order_by(LogChunk.start.desc())
            .limit(1)
        )
        if before is not None:
            query = query.where(LogChunk.start < before)
        row = (await session.execute(query)).first()
        if row is None:
            break
        before, chunk = row
        data = chunk + data
    return data.decode("utf-8", errors="replace").splitlines()[-count:]
