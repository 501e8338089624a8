"""The worker's registration: its inventory in SQL, renewed by a heartbeat.

Admission places runs only on workers seen within WORKER_LOST_SECONDS; a worker that stops
renewing (crashed, cut off) loses its leases there. A (re)registration wakes the queued
runs, since capacity has just arrived.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.admission import wake_queued
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
    ) -> None:
        self._sessions = sessions
        self._client = client
        self._settings = settings
        self.inventory = inventory

    async def register(self) -> None:
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
                async with self._sessions() as session:
                    known = await capacity.heartbeat_worker(
                        session, self.inventory.task_queue, utcnow()
                    )
                if not known:
                    await self.register()
            except Exception as err:  # the database is away: try again at the next beat
                logger.warning("worker heartbeat failed: %s", err)

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
