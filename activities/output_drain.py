"""After a unit exits: letting the rest of its output reach the attempt's log."""

from __future__ import annotations

import asyncio

from temporalio import activity

from activities.interruptions import Following
from activities.output_log import OutputCount

# After the unit exits, how long its output stream may go without a byte before the rest is
# given up; while bytes keep coming the drain goes on, up to DRAIN_MAX_SECONDS in all (a
# loaded host can take longer than one window to read a large output it already holds).
DRAIN_SECONDS = 10.0
DRAIN_MAX_SECONDS = 600.0


async def drain_output(name: str, following: Following) -> None:
    """Let the output of an exited unit reach the log, for a bounded time."""
    if following.task is None:
        return
    count = following.watcher.output if following.watcher is not None else None
    try:
        if not await drain(following.task, count):
            activity.logger.warning("output of %s did not drain in time", name)
    except Exception as err:  # the log is incomplete, the outcome still stands
        activity.logger.warning("following the output of %s failed: %s", name, err)


async def drain(
    task: asyncio.Task[None],
    count: OutputCount | None,
    window: float = DRAIN_SECONDS,
    limit: float = DRAIN_MAX_SECONDS,
) -> bool:
    """Wait for ``task`` (a follow) to end; False, and the task cancelled, if it went
    ``window`` seconds without reading a byte, or past ``limit`` seconds in all.

    Raises:
        Exception: What the follow raised.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        before = count.bytes if count is not None else 0
        try:
            await asyncio.wait_for(asyncio.shield(task), window)
            return True
        except TimeoutError:
            moving = count is not None and count.bytes != before
            if moving and loop.time() - started < limit:
                continue
            task.cancel()
            return False
