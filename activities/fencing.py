"""Fencing on the worker: copies of runs placed again elsewhere are stopped, not followed.

A host taken for lost (frozen, cut off) may come back with its containers still running
(with ``--live-restore`` they outlive a frozen engine). The run has been placed again under a
newer epoch meanwhile (``store/fencing.py``). What stops the stale copy:

* the attempt activity, which checks its epoch before it starts or reattaches to anything and
  when Temporal lets go of it, and removes units of older epochs of its attempt first;
* :func:`stop_stale_units`, which the worker runs before it registers (so before any run is
  placed on it) and whenever its registration was not renewed for WORKER_LOST_SECONDS (it
  comes back from a freeze or a partition), and at each clean-up tick.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runtimes.base import LABEL_ATTEMPT, LABEL_DEPLOYMENT, LABEL_RUN_ID, ContainerRuntime, epoch_of
from store import fencing

logger = logging.getLogger(__name__)


async def stop_stale_units(
    runtime: ContainerRuntime,
    sessions: async_sessionmaker[AsyncSession],
    deployment: str,
    grace_seconds: float,
) -> list[str]:
    """Stop and remove this engine's units of runs placed again since they started."""
    units = [
        (name, labels)
        for name, labels, _running in await runtime.list_units()
        if labels.get(LABEL_DEPLOYMENT) == deployment
        and labels.get(LABEL_RUN_ID)
        and epoch_of(labels) is not None
    ]
    if not units:
        return []
    pairs = [(labels[LABEL_RUN_ID], epoch_of(labels) or 0) for _name, labels in units]
    async with sessions() as session:
        stale = await fencing.stale_pairs(session, pairs)
    stopped = []
    for name, labels in units:
        if (labels[LABEL_RUN_ID], epoch_of(labels) or 0) not in stale:
            continue
        try:
            await runtime.stop(name, grace_seconds)
            await runtime.remove(name)
        except Exception as err:  # the next sweep tries again
            logger.warning("cannot stop stale unit %s: %s", name, err)
            continue
        logger.warning(
            "stopped %s (attempt %s, epoch %s): its run was placed again elsewhere",
            name,
            labels.get(LABEL_ATTEMPT),
            epoch_of(labels),
        )
        stopped.append(name)
    return stopped


async def stop_units_of_epochs(
    runtime: ContainerRuntime,
    run_id: str,
    attempt: int,
    grace_seconds: float,
    *,
    below: int | None = None,
    at: int | None = None,
) -> None:
    """Stop and remove the attempt's units of epochs before ``below`` (or of epoch ``at``)."""
    for name, labels, _running in await runtime.list_units():
        if labels.get(LABEL_RUN_ID) != run_id or labels.get(LABEL_ATTEMPT) != str(attempt):
            continue
        epoch = epoch_of(labels)
        older = below is not None and epoch is not None and epoch < below
        if older or (at is not None and epoch == at):
            await runtime.stop(name, grace_seconds)
            await runtime.remove(name)
