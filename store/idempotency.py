"""Answers to requests sent with an ``Idempotency-Key``, kept for a day."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import IdempotencyRecord, utcnow

KEEP_FOR = timedelta(hours=24)


async def claim(
    session: AsyncSession, actor: str, key: str, request_hash: str
) -> IdempotencyRecord | None:
    """Claim ``key`` for a new request (commits), or return the record already holding it.

    Records older than a day are forgotten first, so their keys can be claimed again.
    """
    await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < utcnow() - KEEP_FOR)
    )
    session.add(
        IdempotencyRecord(actor=actor, key=key, request_hash=request_hash, created_at=utcnow())
    )
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return await session.get(IdempotencyRecord, (actor, key))
    return None


async def complete(
    session: AsyncSession, actor: str, key: str, status_code: int, response: dict[str, Any]
) -> None:
    record = await session.get(IdempotencyRecord, (actor, key))
    if record is not None:
        record.status_code = status_code
        record.response = response
        await session.commit()


async def release(session: AsyncSession, actor: str, key: str) -> None:
    """Forget a claim whose request failed, so that the client may send it again."""
    await session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.actor == actor, IdempotencyRecord.key == key
        )
    )
    await session.commit()
