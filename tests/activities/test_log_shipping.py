"""An attempt's log mirrored to the database as it is written: cut back, retried, resumed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.output_log import ELIDED_MARK, follow_output
from core.settings import LogLimits
from store import log_chunks
from tests.store.test_metric_history import JOB, RUN, sessions

__all__ = ["sessions"]  # the fixture: a migrated database per backend, one job and one run

Sessions = async_sessionmaker[AsyncSession]


async def output(lines: range, pause: float) -> AsyncIterator[bytes]:
    """A unit's output in chunks that end mid-line, over more than a second."""
    data = "".join(f"line {number} of the trainer's output\n" for number in lines).encode()
    pieces = 40
    size = len(data) // pieces + 1
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(pause)


async def stored(sessions: Sessions) -> bytes:
    async with sessions() as session:
        return await log_chunks.read_from(session, RUN, 1, 0)


async def test_the_database_holds_the_file_as_it_ends_cut_back_and_resumed(
    sessions: Sessions, tmp_path: Path
) -> None:
    path = tmp_path / "attempt-1.log"
    # A small bound: the newest part is cut back many times while the output is shipped.
    limits = LogLimits(max_bytes=64 * 1024, max_line=4096)
    failures = 2
    calls = 0

    async def ship(offset: int, data: bytes) -> None:
        nonlocal failures, calls
        calls += 1
        if failures:
            failures -= 1
            raise ConnectionError("the database is away")
        async with sessions() as session:
            await log_chunks.replace_from(
                session, job_id=JOB, run_id=RUN, attempt=1, offset=offset, data=data
            )

    await follow_output(output(range(20_000), 0.05), path, limits, source="unit-1", ship=ship)
    file = path.read_bytes()
    assert ELIDED_MARK in file and file.endswith(b"line 19999 of the trainer's output\n")
    # Shipped every second and at the end; the two refused shipments were made good later.
    assert calls >= 3
    assert await stored(sessions) == file

    # The attempt goes on in a new unit (an engine restart): its output is appended, and
    # shipped from where the last shipment ended.
    await follow_output(output(range(3), 0), path, limits, source="unit-2", ship=ship)
    assert path.read_bytes().endswith(b"line 2 of the trainer's output\n")
    assert await stored(sessions) == path.read_bytes()
