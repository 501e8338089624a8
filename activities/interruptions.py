"""How one try of the attempt activity ends when Temporal interrupts it.

The SDK cancels an activity for many reasons; only a cancel the workflow asked for may stop
the trainer. Whatever this try had begun (a start, a watcher) is kept here so that either
case can be handled wherever the interruption lands.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime

from temporalio import activity

from activities.attempt_watcher import AttemptWatcher
from runtimes.base import StartResult


@dataclass
class Following:
    """How far one try got: its unit, the start it asked for, the watcher following it."""

    start: asyncio.Future[StartResult] | None = None
    watcher: AttemptWatcher | None = None
    task: asyncio.Task[None] | None = None
    # The unit this try starts or follows: the attempt's newest incarnation.
    name: str | None = None

    async def close(self) -> None:
        """Stop what this try runs in the background and wait until it has stopped.

        The output follower (a task and its reader thread) and the watcher's recordings
        (checkpoint hashing threads included) end with the try, whichever way it ends: a
        retry follows the unit again, and nothing may write its log behind its back.
        """
        task, self.task = self.task, None
        watcher, self.watcher = self.watcher, None
        if task is not None and not task.done():
            task.cancel()
        if watcher is not None:
            await watcher.close()
        if task is not None:
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                activity.logger.debug("output follower ended: %s", task.exception())


def ignore_outcome(future: asyncio.Future[StartResult]) -> None:
    """Retrieve a start nobody waits for any more (the retry starts or reattaches)."""
    if not future.cancelled():
        future.exception()


def recorded_start() -> datetime | None:
    """When an earlier try of this activity started the attempt, from its last heartbeat."""
    for detail in activity.info().heartbeat_details:
        if isinstance(detail, dict) and isinstance(detail.get("started_at"), str):
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(detail["started_at"])
    return None


def cancel_requested() -> bool:
    """Whether the workflow asked for this cancel (the run is being cancelled).

    The SDK cancels an activity for other reasons too: its heartbeat timed out, the server no
    longer knows it, it was paused or reset, a local timeout, the worker is shutting down.
    """
    details = activity.cancellation_details()
    return details is not None and details.cancel_requested
