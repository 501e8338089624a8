"""Host loss decided from the workers table: runs on a silent host are told to move.

A frozen host (its worker and engine stopped whole) leaves long polls open on its own task
queue; Temporal hands the retried attempt to one of them, which never answers, so a
schedule-to-start timeout alone notices the loss only once those polls have expired (about a
minute late). Instead, every live worker looks, at each registration beat, for runs holding a
lease on a worker of its deployment whose registration was last renewed more than
HOST_LOST_SECONDS ago, and sends each of their workflows the ``host_lost`` signal with the
placement epoch it found (first sending the run's next workflow task to the shared queue
rather than to the sticky queue of the worker that last ran it, possibly the frozen one). The
workflow (``workflows/attempts.py``) stops waiting for that host and places the run again, if
the epoch is still its own; duplicates from several workers are harmless. A worker whose own
registration is not current (it is just back from a freeze itself) sends nothing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import ResetStickyTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from core.settings import Settings
from store import fencing
from store.models import utcnow
from workflows.models import HOST_LOST_SIGNAL

logger = logging.getLogger(__name__)


class HostLossWatch:
    """Signals the runs placed on hosts silent for HOST_LOST_SECONDS."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: Client,
        settings: Settings,
        own_task_queue: str,
    ) -> None:
        self._sessions = sessions
        self._client = client
        self._settings = settings
        self._own = own_task_queue

    async def run_forever(self) -> None:
        """Look every WORKER_HEARTBEAT_SECONDS; errors are retried at the next look."""
        while True:
            await asyncio.sleep(self._settings.worker_heartbeat_seconds)
            try:
                await self.tick()
            except Exception as err:  # the database is away: try again at the next beat
                logger.warning("could not look for lost hosts: %s", err)

    async def tick(self) -> int:
        """Signal the runs on lost hosts; how many were signalled."""
        now = utcnow()
        own_fresh = now - timedelta(seconds=self._settings.worker_lost_seconds)
        lost_before = now - timedelta(seconds=self._settings.host_lost_seconds)
        async with self._sessions() as session:
            if not await fencing.seen_since(session, self._own, own_fresh):
                return 0
            runs = await fencing.runs_on_lost_hosts(session, self._settings.task_queue, lost_before)
        signalled = 0
        for run_id, epoch in runs:
            try:
                await self._unstick(run_id)
                await self._client.get_workflow_handle(run_id).signal(HOST_LOST_SIGNAL, epoch)
            except RPCError as err:  # closed meanwhile: its lease goes at the next admission
                logger.debug("could not tell %s its host is lost: %s", run_id, err)
                continue
            logger.warning("run %s (epoch %d): its host is lost; placing it again", run_id, epoch)
            signalled += 1
        return signalled

    async def _unstick(self, run_id: str) -> None:
        """Send the run's next workflow task to the shared queue, not to the sticky queue of
        the worker that last ran it, which may be the frozen one (its open poll would take
        the task and hold it for the workflow task timeout)."""
        await self._client.workflow_service.reset_sticky_task_queue(
            ResetStickyTaskQueueRequest(
                namespace=self._client.namespace, execution=WorkflowExecution(workflow_id=run_id)
            )
        )
