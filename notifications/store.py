"""Delivery bookkeeping: one row per (run, transition, channel), so each is sent at most once.

Temporal runs one attempt of an activity at a time, so checking for a ``sent`` row before
sending and recording the outcome after is enough to keep a retried notify activity from
repeating a channel that already took the message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.models import NotificationDelivery, utcnow

DeliveryStatus = Literal["sent", "failed"]


class DeliveryView(BaseModel):
    """One channel's delivery of one transition of a run, as the API shows it."""

    channel: str
    event: str
    status: DeliveryStatus
    detail: str | None
    updated_at: datetime


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


async def deliveries_for_run(session: AsyncSession, run_id: str) -> list[DeliveryView]:
    """Every recorded delivery of a run, in the order the transitions happened."""
    rows = await session.scalars(
        select(NotificationDelivery)
        .where(NotificationDelivery.run_id == run_id)
        .order_by(NotificationDelivery.created_at, NotificationDelivery.id)
    )
    return [
        DeliveryView(
            channel=row.channel,
            event=row.event,
            status="sent" if row.status == "sent" else "failed",
            detail=row.detail,
            updated_at=row.updated_at,
        )
        for row in rows.all()
    ]
