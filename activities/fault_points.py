"""Test-only pauses at phases too short to hit from outside (``FAULT_PAUSE_AT``).

Inert unless the setting names a point. A fault-injection test sets it on a worker it runs as
a subprocess, waits for the marker file, kills the worker there and starts another one
without the setting. The heartbeat goes on during the pause, so Temporal sees a live activity
until the kill.

Points: ``pull`` (the pull activity has begun, nothing pulled yet), ``start`` (the trainer's
unit is started; the activity has recorded nothing of it), ``finish`` (the trainer exited;
nothing of its end is recorded), ``result`` (the end is recorded; the unit is not removed
and the result not reported).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio import activity

from core.settings import FaultPoint, Settings

_POLL_SECONDS = 0.1


def fault_marker(settings: Settings, point: FaultPoint) -> Path:
    """The file that exists while an activity is paused at ``point``."""
    return settings.data_dir.resolve() / "fault-points" / point


async def pause_at(settings: Settings, point: FaultPoint) -> None:
    """With ``FAULT_PAUSE_AT=<point>``: create the marker, then pause until it is removed."""
    if settings.fault_pause_at != point:
        return
    marker = fault_marker(settings, point)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    activity.logger.warning("FAULT_PAUSE_AT=%s: paused until %s is removed", point, marker)
    while marker.exists():
        await asyncio.sleep(_POLL_SECONDS)
