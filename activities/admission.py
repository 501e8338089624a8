"""Admission activities: lease a run's resources on some worker or queue it, and give back.

Both run on the shared task queue: the leases are rows in SQL, so any worker can decide
where a run goes (``store/capacity.py``). Giving back wakes the runs next in the queue by
signalling their workflows, so a freed GPU is taken in well under a second rather than at
the next safety-net poll.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError

from core.settings import Settings, parse_size
from store import capacity
from store.models import utcnow
from workflows.models import (
    ACQUIRE_CAPACITY,
    CAPACITY_FREED_SIGNAL,
    RELEASE_CAPACITY,
    Admission,
    CapacityRequest,
    ReleaseCapacity,
)

logger = logging.getLogger(__name__)
# The most waiting runs one release wakes in a line; a woken run that cannot start yet
# goes back to waiting, so this bounds only the signals sent.
WAKE_LIMIT = 16


def need_of(resources: dict[str, Any] | None) -> capacity.Need:
    """What a job's ``resources`` ask a worker for."""
    resources = resources or {}
    gpus = resources.get("gpus")
    memory = resources.get("memory")
    return capacity.Need(
        gpus=capacity.ALL_GPUS if gpus == "all" else int(gpus or 0),
        cpus=float(resources.get("cpus") or 0.0),
        memory_bytes=parse_size(str(memory)) if memory else 0,
    )


async def wake_queued(
    client: Client,
    sessions: async_sessionmaker[AsyncSession],
    pool: str,
    lost_after: timedelta,
    gpu_runs: int = WAKE_LIMIT,
    other_runs: int = WAKE_LIMIT,
) -> int:
    """Signal the first waiting runs of each line that capacity may have freed.

    The head of a line is served first, so waking as many GPU runs as GPUs were freed
    reaches every run that can start now.
    """
    async with sessions() as session:
        run_ids = await capacity.next_in_queue(
            session,
            pool,
            min(gpu_runs, WAKE_LIMIT),
            min(other_runs, WAKE_LIMIT),
            utcnow(),
            lost_after,
        )
    woken = 0
    for run_id in run_ids:
        try:
            await client.get_workflow_handle(run_id).signal(CAPACITY_FREED_SIGNAL)
            woken += 1
        except RPCError as err:  # closed meanwhile: its queue place goes at the next admission
            logger.debug("could not wake %s: %s", run_id, err)
    return woken


async def release_and_wake(
    client: Client,
    sessions: async_sessionmaker[AsyncSession],
    pool: str,
    lost_after: timedelta,
    run_id: str,
) -> None:
    """Give back what the run holds (or its place in the queue) and wake the next runs."""
    async with sessions() as session:
        released = await capacity.release(session, run_id)
    if released.gpus or released.cpus_or_memory:
        await wake_queued(
            client,
            sessions,
            pool,
            lost_after,
            released.gpus,
            WAKE_LIMIT if released.cpus_or_memory else 0,
        )


class CapacityActivities:
    """Holds the worker's session factory and settings; registered by worker.py."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._lost_after = timedelta(seconds=settings.worker_lost_seconds)

    @activity.defn(name=ACQUIRE_CAPACITY)
    async def acquire_capacity(self, request: CapacityRequest) -> Admission:
        """Lease the run's resources on the best-fitting live worker, or queue it.

        A queued run's status (job and run) becomes ``queued`` with its reason; an admitted
        one goes back to ``running`` and records its host and GPU ids.
        """
        async with self._sessions() as session:
            placement = await capacity.admit(
                session,
                pool=self._settings.task_queue,
                job_id=request.job_id,
                run_id=request.run_id,
                need=need_of(request.resources),
                now=utcnow(),
                lost_after=self._lost_after,
            )
        if placement.admitted:
            activity.logger.info(
                "run %s placed on %s with GPUs %s", request.run_id, placement.host, placement.gpus
            )
            if placement.spare_gpus > 0:
                # GPUs remain for the runs behind this one (several were freed at once).
                await wake_queued(
                    activity.client(),
                    self._sessions,
                    self._settings.task_queue,
                    self._lost_after,
                    1,
                    0,
                )
        return Admission(
            admitted=placement.admitted,
            host=placement.host,
            task_queue=placement.task_queue,
            gpus=placement.gpus,
            queue_reason=placement.reason,
            queue_position=placement.position,
            epoch=placement.epoch,
        )

    @activity.defn(name=RELEASE_CAPACITY)
    async def release_capacity(self, request: ReleaseCapacity) -> None:
        """Give back what the run holds (or its place in the queue) and wake the next runs."""
        await release_and_wake(
            activity.client(),
            self._sessions,
            self._settings.task_queue,
            self._lost_after,
            request.run_id,
        )
