"""Which parts of a job's Temporal Schedule a change of the job touches.

Temporal's UpdateSchedule replaces the whole schedule, so the API applies the parts a change
touched onto the description Temporal hands it and sends everything else back as Temporal
described it: a pause made in the Temporal UI or with ``temporal schedule toggle`` survives a
PUT that did not mention ``paused``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntFlag


class SchedulePart(IntFlag):
    """A part of a schedule; stored as bit flags in the journal (``schedule_syncs.parts``)."""

    NONE = 0
    SPEC = 1  # the cron and its time zone
    ACTION = 2  # the workflow the schedule starts: input, memo, search attributes
    POLICY = 4  # overlap policy and catch-up window
    PAUSED = 8  # the pause state


# What each field of a job decides in its schedule; the other fields live in SQL only (the
# workflow reads them at the start of each run).
PART_OF_FIELD = {
    "schedule": SchedulePart.SPEC,
    "timezone": SchedulePart.SPEC,
    "name": SchedulePart.ACTION,
    "image": SchedulePart.ACTION,
    "overlap_policy": SchedulePart.POLICY,
    "catchup_window_seconds": SchedulePart.POLICY,
    "paused": SchedulePart.PAUSED,
}

# What the journal replay makes match SQL: everything but the pause state, which Temporal
# owns (SQL mirrors it) unless the journalled change was about it.
DEFINITION = SchedulePart.SPEC | SchedulePart.ACTION | SchedulePart.POLICY


def parts_of(fields: Iterable[str]) -> SchedulePart:
    """The schedule parts that a change of ``fields`` touches."""
    parts = SchedulePart.NONE
    for field in fields:
        parts |= PART_OF_FIELD.get(field, SchedulePart.NONE)
    return parts
