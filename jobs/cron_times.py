"""Firing times of a validated cron expression inside a time range, for backfill dry runs.

Temporal can list a schedule's next action times but not the firings of a past range, so a
dry run expands the expression here. It only ever sees what ``validate_cron`` accepted: the
normalised five-field form, where day-of-month and day-of-week are never both restricted
(so ANDing them, as Temporal does, is also what classic cron means).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def _expand(field: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in field.split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, last = base.split("-")
            start, end = int(first), int(last)
        else:
            start = end = int(base)
        values.update(range(start, end + 1, step))
    return frozenset(values)


def firing_times(
    normalised: str, timezone: str, start: datetime, end: datetime, limit: int
) -> Iterator[datetime]:
    """UTC firing times ``start <= t < end`` of ``normalised`` in ``timezone``, in order.

    Stops after ``limit`` times. Local times that do not exist (skipped by a daylight-saving
    change) do not fire; ambiguous ones fire once, at their first occurrence.
    """
    fields = normalised.split()
    minutes, hours, days, months, weekdays = (
        _expand(field, low, high) for field, (low, high) in zip(fields, _BOUNDS, strict=True)
    )
    zone = ZoneInfo(timezone)
    day: date = start.astimezone(zone).date() - timedelta(days=1)
    last_day = end.astimezone(zone).date() + timedelta(days=1)
    produced = 0
    while day <= last_day and produced < limit:
        # Python's weekday() counts from Monday = 0; cron from Sunday = 0.
        if day.month in months and day.day in days and (day.weekday() + 1) % 7 in weekdays:
            for hour in sorted(hours):
                for minute in sorted(minutes):
                    local = datetime.combine(day, time(hour, minute), tzinfo=zone)
                    moment = local.astimezone(UTC)
                    if moment.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
                        continue  # a wall-clock time the daylight-saving change skipped
                    if start <= moment < end:
                        yield moment
                        produced += 1
                        if produced >= limit:
                            return
        day += timedelta(days=1)
