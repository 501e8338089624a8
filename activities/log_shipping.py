"""Shipping an attempt's output to the database, where any API replica reads it.

The worker's log file stays the source (bounded, resumed by a reattached activity); the
database holds a mirror of it in chunks (store.log_chunks), so ``/logs`` works when the API
and the worker hosts share nothing but Temporal and the database.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.output_log import Ship
from core.settings import Settings
from store import log_chunks


def log_shipper(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    *,
    job_id: str,
    run_id: str,
    attempt: int,
) -> Ship | None:
    """Where the attempt's log changes go (None when logs stay in files only)."""
    if settings.log_storage != "database":
        return None

    async def ship(offset: int, data: bytes) -> None:
        async with sessions() as session:
            await log_chunks.replace_from(
                session, job_id=job_id, run_id=run_id, attempt=attempt, offset=offset, data=data
            )

    return ship
