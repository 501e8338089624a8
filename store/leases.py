"""Named leases in SQL: one holder at a time, taken over once the holder stops renewing.

Taking or renewing is one conditional UPDATE (held by me, or expired), or the INSERT of a
new row; both are atomic on SQLite (one writer) and PostgreSQL (the UPDATE re-checks its
condition on the row it waited for), so two processes never both hold a lease.
"""

from __future__ import annotations

import time

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Lease


def now_ms() -> int:
    return int(time.time() * 1000)


async def take_lease(session: AsyncSession, name: str, holder: str, seconds: float) -> bool:
    """Take or renew ``name`` for ``seconds`` (commits). Returns whether ``holder`` has it."""
    now = now_ms()
    expires = now + int(seconds * 1000)
    taken = await session.execute(
        update(Lease)
        .where(Lease.name == name)
        .where((Lease.holder == holder) | (Lease.expires_at_ms < now))
        .values(holder=holder, expires_at_ms=expires)
        .execution_options(synchronize_session=False)
    )
    if getattr(taken, "rowcount", 0) == 1:
        await session.commit()
        return True
    await session.rollback()
    session.add(Lease(name=name, holder=holder, expires_at_ms=expires))
    try:
        await session.commit()
    except IntegrityError:  # the row exists and someone else holds it
        await session.rollback()
        return False
    return True


async def release_lease(session: AsyncSession, name: str, holder: str) -> None:
    """Give the lease up (commits), so another process takes it at its next try."""
    await session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .values(expires_at_ms=0)
        .execution_options(synchronize_session=False)
    )
    await session.commit()


async def holder_of(session: AsyncSession, name: str) -> str | None:
    """Who holds ``name`` now (None if nobody, or the lease has expired)."""
    lease = await session.get(Lease, name)
    if lease is None or lease.expires_at_ms < now_ms():
        return None
    return lease.holder
