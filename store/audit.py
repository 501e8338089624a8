"""The audit trail: who changed which job through the API, and how."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import AuditEvent, utcnow


def record_change(
    session: AsyncSession, actor: str, action: str, job_id: str, detail: str | None = None
) -> None:
    """Stage an audit event; the caller commits it with the change itself."""
    session.add(AuditEvent(at=utcnow(), actor=actor, action=action, job_id=job_id, detail=detail))


async def events_of(session: AsyncSession, job_id: str) -> Sequence[AuditEvent]:
    rows = await session.scalars(
        select(AuditEvent).where(AuditEvent.job_id == job_id).order_by(AuditEvent.id)
    )
    return rows.all()
