"""Releasing claims that no workflow holds: an API that died between claim and start.

A manual run, a retry or a one-off job's run is claimed in SQL before its workflow starts;
if the API dies (or Temporal refuses the start) in between and the release is lost too, the
job would refuse every run. A claim older than CLAIM_GRACE_SECONDS whose workflow does not
exist, or has closed without recording its end, is released here. The release is a
compare-and-set on the claimed run id, so a claim taken again meanwhile is left alone.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from store import claims
from store.models import utcnow

logger = logging.getLogger(__name__)


async def release_stale_claims(
    sessions: async_sessionmaker[AsyncSession], client: Client, grace: timedelta
) -> int:
    """Release the claims older than ``grace`` with no running workflow; how many were."""
    async with sessions() as session:
        stale = await claims.claims_older_than(session, utcnow() - grace)
    released = 0
    for job_id, run_id in stale:
        if await _workflow_running(client, run_id):
            continue
        async with sessions() as session:
            if await claims.release(session, job_id, run_id):
                released += 1
                logger.warning("released claim %s of %s: no workflow runs it", run_id, job_id)
            await session.commit()
    return released


async def _workflow_running(client: Client, run_id: str) -> bool:
    try:
        description = await client.get_workflow_handle(run_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return description.status == WorkflowExecutionStatus.RUNNING
