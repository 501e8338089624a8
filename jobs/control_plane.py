"""The one SQL-Temporal reconciler of the cluster, behind a lease in SQL.

Every API replica and every worker runs this loop, but a tick acts only in the process that
holds the ``sql-temporal-reconciler`` lease (``store/leases.py``): the holder renews it at
each tick, and when it dies another process takes it over once LEADER_LEASE_SECONDS have
passed (at once, if it stopped cleanly and released it). The leader replays the
``schedule_syncs`` journal, mirrors every schedule's state into SQL with one listing and one
bulk write, finishes runs whose workflow closed behind our back, and folds the counters'
changes (``store/counters.py``). Removing leftover containers is not here: each worker does
it for its own engine.

A lease in SQL rather than a Temporal workflow with a fixed id: it works on both backends,
costs one UPDATE per tick, and the reconciler keeps working while Temporal is down (the
journal waits, the lease does not flap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.settings import Settings
from jobs.closed_runs import ClosedRunFinder
from jobs.definition_sync import replay_grace
from jobs.schedule_control import SchedulingService
from jobs.service import JobService
from jobs.temporal import TemporalConnection
from store import leases
from store.counters import fold_deltas
from supervision.claims import release_stale_claims

logger = logging.getLogger(__name__)

LEADER_LEASE = "sql-temporal-reconciler"


def holder_name(role: str) -> str:
    """A name unique to this reconciler: host, process, and one random part."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class TickReport:
    journal_repaired: int = 0
    schedules_mirrored: int = 0
    runs_finished: int = 0
    deltas_folded: int = 0
    claims_released: int = 0


class ControlPlaneReconciler:
    """Journal replay, schedule mirror and closed runs, by the lease holder only."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        temporal: TemporalConnection,
        service: JobService,
        scheduling: SchedulingService,
        settings: Settings,
        role: str,
    ) -> None:
        self._sessions = sessions
        self._temporal = temporal
        self._service = service
        self._scheduling = scheduling
        self._settings = settings
        self.holder = holder_name(role)
        self._grace = replay_grace(timedelta(seconds=settings.rpc_timeout_seconds))
        self._finder: ClosedRunFinder | None = None
        self.ticks_led = 0  # ticks this process acted in, as the leader

    async def lead(self) -> bool:
        """Take or renew the lease; whether this process is the leader now."""
        async with self._sessions() as session:
            return await leases.take_lease(
                session, LEADER_LEASE, self.holder, self._settings.leader_lease_seconds
            )

    async def release(self) -> None:
        with contextlib.suppress(Exception):  # the database may be gone at shutdown
            async with self._sessions() as session:
                await leases.release_lease(session, LEADER_LEASE, self.holder)

    async def tick(self) -> TickReport | None:
        """One pass if this process leads (its report), else None. Steps fail alone."""
        if not await self.lead():
            return None
        self.ticks_led += 1
        report = TickReport()
        try:
            report.journal_repaired = await self._service.reconcile(older_than=self._grace)
        except Exception as err:  # Temporal or the database is down; next tick
            logger.warning("journal replay failed: %s", err)
        try:
            report.schedules_mirrored = await self._scheduling.sync_mirror()
        except Exception as err:
            logger.warning("schedule mirror failed: %s", err)
        try:
            report.runs_finished = await (await self.finder()).finish()
        except Exception as err:
            logger.warning("closed-run reconciliation failed: %s", err)
        try:
            report.claims_released = await release_stale_claims(
                self._sessions,
                await self._temporal.client(),
                timedelta(seconds=self._settings.claim_grace_seconds),
            )
        except Exception as err:
            logger.warning("releasing stale claims failed: %s", err)
        try:
            async with self._sessions() as session:
                report.deltas_folded = await fold_deltas(session)
        except Exception as err:
            logger.warning("folding the counters failed: %s", err)
        return report

    async def finder(self) -> ClosedRunFinder:
        if self._finder is None:
            self._finder = ClosedRunFinder(self._sessions, await self._temporal.client())
        return self._finder

    async def run_forever(self) -> None:
        """Tick every RECONCILE_INTERVAL_SECONDS; give the lease up when cancelled."""
        try:
            while True:
                await asyncio.sleep(self._settings.reconcile_interval_seconds)
                try:
                    await self.tick()
                except Exception as err:  # the lease could not be read: the database is down
                    logger.warning("reconciler tick failed: %s", err)
        finally:
            await asyncio.shield(self.release())
