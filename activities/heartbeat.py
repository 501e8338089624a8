"""One background heartbeat for the whole life of a long activity.

Temporal declares an activity lost when it stops heartbeating, and a cancel only reaches the
activity in the answer to a heartbeat. Heartbeating from the activity's own code covers only
the phases that remember to; a task beating on its own covers every phase (container
create and start, checkpoint hashing, draining the output, recording the end).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from temporalio import activity


class Heartbeat:
    """The latest details of the activity, sent every ``interval`` seconds while it runs."""

    def __init__(self, interval: float, details: dict[str, Any]) -> None:
        self._interval = interval
        self._details = dict(details)
        self._sources: list[Callable[[], dict[str, Any]]] = []

    def update(self, **fields: Any) -> None:
        """Change fields of the details; the next beat carries them."""
        self._details |= fields

    def add_source(self, source: Callable[[], dict[str, Any]]) -> None:
        """Merge what ``source`` returns into the details of every beat from now on."""
        self._sources.append(source)

    def beat_now(self) -> None:
        """Send the details at once, ahead of a failure that the next try must know of."""
        activity.heartbeat(self.details())

    def details(self) -> dict[str, Any]:
        details = dict(self._details)
        for source in self._sources:
            details |= source()
        return details

    async def _beat(self) -> None:
        while True:
            # The SDK throttles what it sends to the server and keeps only the newest details.
            activity.heartbeat(self.details())
            await asyncio.sleep(self._interval)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Heartbeat]:
        """Beat from a background task until the block is left, however it is left."""
        beating = asyncio.create_task(self._beat(), name="activity-heartbeat")
        try:
            yield self
        finally:
            beating.cancel()
            # asyncio.wait never raises the task's CancelledError, so a cancel of the
            # activity itself still propagates.
            await asyncio.wait([beating])


def beat_interval(poll_interval: float) -> float:
    """How often to beat: each poll, and at least four times per heartbeat timeout."""
    timeout = activity.info().heartbeat_timeout
    if not timeout:
        return poll_interval
    return max(0.05, min(poll_interval, timeout.total_seconds() / 4))
