"""Waiting for an attempt's unit to end: its time limit, checkpoint scans, its output.

Each poll is bounded (``POLL_INTERVAL_SECONDS``), so a cancel is never kept waiting, and the
activity's heartbeat task beats meanwhile. An engine that cannot be reached ends the wait
(``RuntimeUnavailableError``): the next try of the activity waits for the engine, and then
``exit_details`` tells whether the engine's restart killed the unit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from temporalio import activity

from activities.interruptions import Following
from core.settings import Settings
from runtimes.base import ContainerRuntime, UnitExit
from store.models import utcnow

# What Docker reports for a SIGKILLed container, when a stop could not read the real code.
_KILLED = 137


async def wait_for_exit(
    runtime: ContainerRuntime,
    name: str,
    following: Following,
    settings: Settings,
    *,
    first_start: datetime,
    limit_seconds: int | None,
    on_healthy: Callable[[], None],
) -> tuple[UnitExit, bool]:
    """Poll until the unit exits or its time is up; (how it ended, whether it timed out).

    ``on_healthy`` is called once, at the first poll the engine answers.

    Raises:
        RuntimeUnavailableError: The engine cannot be reached (or told of an exit while it
            was going away).
    """
    loop = asyncio.get_running_loop()
    next_scan = loop.time() + settings.checkpoint_scan_seconds
    healthy = False
    while True:
        code = await runtime.wait(name, settings.poll_interval_seconds)
        if not healthy:
            on_healthy()
            healthy = True
        if code is not None:
            return await runtime.exit_details(name), False
        _follow_again_if_cut_off(runtime, name, following)
        if following.watcher is not None:
            # Reports that arrived in a burst are written within a second, not at the next one.
            await following.watcher.flush_if_due()
        if loop.time() >= next_scan and following.watcher is not None:
            # Unannounced checkpoints are recorded as they appear, once they settle; in
            # the background, as hashing a large one takes longer than a heartbeat timeout.
            following.watcher.start_scan()
            next_scan = loop.time() + settings.checkpoint_scan_seconds
        elapsed = (utcnow() - first_start).total_seconds()
        if limit_seconds is not None and elapsed > limit_seconds:
            activity.logger.info("%s exceeded its %d s", name, limit_seconds)
            stopped = await runtime.stop(name, settings.stop_grace_seconds)
            return UnitExit(stopped if stopped is not None else _KILLED), True


def _follow_again_if_cut_off(runtime: ContainerRuntime, name: str, following: Following) -> None:
    """Follow the output again if its stream ended while the unit runs on (the engine went
    away and came back with the unit alive): the log resumes where it stopped."""
    task, watcher = following.task, following.watcher
    if task is None or watcher is None or not task.done():
        return
    if not task.cancelled() and task.exception() is not None:
        activity.logger.info("following %s again after: %s", name, task.exception())
    following.task = asyncio.create_task(watcher.follow(runtime, name))
