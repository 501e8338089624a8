"""Delivery bookkeeping: one row per (run, transition, channel), so each is sent at most once.

Temporal runs one attempt of an activity at a time, so checking for a ``sent`` row before
sending and recording the outcome after is enough to keep a retried notify activity from
repeating a channel that already took the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import NotificationDelivery, utcnow

DeliveryStatus = Literal["sent", "failed"]


async def already_sent(session: AsyncSession, run_id: str, event: str, channel: str) -> bool:
    """Whether this transition already reached this channel (claim it only if not)."""
    status = await session.scalar(
        select(NotificationDelivery.status).where(
            NotificationDelivery.run_id == run_id,
            NotificationDelivery.event == event,
            NotificationDelivery.channel == channel,
        )
    )
    return status == "sent"


async def record_delivery(
    session: AsyncSession,
    *,
    job_id: str,
    run_id: str,
    event: str,
    channel: str,
    status: DeliveryStatus,
    detail: str | None,
) -> None:
    """Insert or update the row of (run, event, channel) with the latest outcome; commits.

    ``detail`` must already be free of secrets.
    """
    now = utcnow()
    changed = await _update(session, run_id, event, channel, status, detail, now)
    if not changed:
        session.add(
            NotificationDelivery(
                job_id=job_id,
                run_id=run_id,
                event=event,
                channel=channel,
                status=status,
                detail=detail,
                created_at=now,
                updated_at=now,
            )
        )
    try:
        await session.commit()
    except IntegrityError:
        # The row appeared meanwhile (update it), or the job was deleted (nothing to keep).
        await session.rollback()
        await _update(session, run_id, event, channel, status, detail, now)
        await session.commit()


async def _update(
    session: AsyncSession,
    run_id: str,
    event: str,
    channel: str,
    status: DeliveryStatus,
    detail: str | None,
    now: datetime,
) -> bool:
    result = await session.execute(
        update(NotificationDelivery)
        .where(
            NotificationDelivery.run_id == run_id,
            NotificationDelivery.event == event,
            NotificationDelivery.channel == channel,
        )
        .values(status=status, detail=detail, updated_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


async def deliveries_of_runs(
    session: AsyncSession, run_ids: Sequence[str]
) -> dict[str, list[NotificationDelivery]]:
    """Every recorded delivery of each run, in the order the transitions happened (1 query)."""
    found: dict[str, list[NotificationDelivery]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return found
    rows = await session.scalars(
        select(NotificationDelivery)
        .where(NotificationDelivery.run_id.in_(run_ids))
        .order_by(NotificationDelivery.created_at, NotificationDelivery.id)
    )
    for row in rows:
        found[row.run_id].append(row)
    return found
