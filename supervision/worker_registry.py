"""The worker's registration: its inventory in SQL, renewed by a heartbeat.

Admission places runs only on workers seen within WORKER_LOST_SECONDS; a worker that stops
renewing (crashed, cut off) takes no new runs; its runs keep their leases until placed again.
A (re)registration wakes the queued runs, since capacity has just arrived.

A worker whose registration was not renewed for WORKER_LOST_SECONDS (frozen, cut off) was
taken for lost, and its runs may have been placed again elsewhere: before it renews (so before
any run can be placed on it again) it runs its fence, which stops the units of those runs
still running on its engine (``activities/fencing.py``). The worker runs it once before its
first registration too.

A renewal is Temporal answering a cheap call (``GetSystemInfo``), then the database taking
the heartbeat, each within a bound: a worker that cannot do both for the self-fence deadline
stops its own training units (``activities/self_fence.py``) before its leases expire and its
runs can be placed elsewhere; each renewal lifts that fence again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from activities.admission import wake_queued
from activities.self_fence import SelfFence
from core.settings import Settings
from store import capacity
from store.models import utcnow
from supervision.inventory import Inventory

logger = logging.getLogger(__name__)


class WorkerRegistry:
    """Registers one worker's inventory and keeps its registration alive."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: Client,
        settings: Settings,
        inventory: Inventory,
        fence: Callable[[], Awaitable[object]] | None = None,
        self_fence: SelfFence | None = None,
    ) -> None:
        self._sessions = sessions
        self._client = client
        self._settings = settings
        self.inventory = inventory
        self._fence = fence
        self._self_fence = self_fence
        self._renewed = time.monotonic()

    async def register(self) -> None:
        try:
            await self._run_fence()
        except Exception as err:  # an engine that cannot be reached runs nothing either
            logger.warning("could not look for stale units before registering: %s", err)
        inventory = self.inventory
        async with self._sessions() as session:
            await capacity.register_worker(
                session,
                name=inventory.name,
                pool=inventory.pool,
                task_queue=inventory.task_queue,
                gpus=inventory.gpus,
                cpus=inventory.cpus,
                memory_bytes=inventory.memory_bytes,
                max_attempts=inventory.max_attempts,
                now=utcnow(),
            )
        logger.info(
            "worker %s registered: GPUs %s, %g CPUs, %d bytes of memory, %d attempts at once",
            inventory.name,
            inventory.gpus or "none",
            inventory.cpus,
            inventory.memory_bytes,
            inventory.max_attempts,
        )
        await self._wake()

    async def run_forever(self) -> None:
        """Renew the registration every WORKER_HEARTBEAT_SECONDS; errors are retried."""
        while True:
            await asyncio.sleep(self._settings.worker_heartbeat_seconds)
            try:
                if time.monotonic() - self._renewed >= self._settings.worker_lost_seconds:
                    logger.warning(
                        "worker %s was not renewed for %.0f s: stopping runs placed elsewhere",
                        self.inventory.name,
                        time.monotonic() - self._renewed,
                    )
                    await self._run_fence()
                await self._renew()
                self._renewed = time.monotonic()
                if self._self_fence is not None:
                    await self._self_fence.renewed()
            except Exception as err:  # the database is away: try again at the next beat
                logger.warning("worker heartbeat failed: %s", err)

    async def _renew(self) -> None:
        """Temporal answers, then the database takes the heartbeat, each within a bound (a
        cut-off peer may never answer); raises otherwise. A worker Temporal does not hear
        stops renewing in SQL too, so its leases expire there."""
        bound = min(self._settings.rpc_timeout_seconds, self._settings.self_fence_deadline)
        await self._client.workflow_service.get_system_info(
            GetSystemInfoRequest(), timeout=timedelta(seconds=bound)
        )
        async with asyncio.timeout(bound):
            async with self._sessions() as session:
                known = await capacity.heartbeat_worker(
                    session, self.inventory.task_queue, utcnow()
                )
        if not known:
            await self.register()

    async def _run_fence(self) -> None:
        """Stop stale copies on this engine; raises (no renewal) if that cannot be done."""
        if self._fence is not None:
            await self._fence()

    async def _wake(self) -> None:
        try:
            await wake_queued(
                self._client,
                self._sessions,
                self._settings.task_queue,
                timedelta(seconds=self._settings.worker_lost_seconds),
            )
        except Exception as err:  # the safety-net poll wakes them later
            logger.warning("could not wake queued runs: %s", err)
