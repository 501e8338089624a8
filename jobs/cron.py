"""Validate classic five-field cron strings before they become Temporal Schedules.

Temporal reads cron strings differently from classic (Vixie) cron: day-of-month and
day-of-week are combined with AND, a sixth field is a year, and it accepts forms
(`@every`, `CRON_TZ=`, `5/15`, name prefixes) that mean something else elsewhere or nothing
at all. `validate_cron` admits only the subset on which both readings agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["CronError", "validate_cron"]


class CronError(ValueError):
    """A cron expression that is malformed or would not mean what classic cron means."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: Mapping[str, int] = field(default_factory=dict)
    names_hint: str = ""


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DAY_OF_MONTH = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, {m: i for i, m in enumerate(_MONTHS, 1)}, "JAN-DEC")
_DAY_OF_WEEK = _Field("day-of-week", 0, 7, {d: i for i, d in enumerate(_DAYS)}, "SUN-SAT")
_FIELDS = (_MINUTE, _HOUR, _DAY_OF_MONTH, _MONTH, _DAY_OF_WEEK)

_SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_NUMBER = re.compile(r"[0-9]+")
_QUARTZ_L_OR_W = re.compile(r"[0-9]*[LW]|LW", re.IGNORECASE)


def validate_cron(expr: str) -> str:
    """Check a classic cron expression and return the form to hand to Temporal.

    Args:
        expr: Five whitespace-separated fields (minute hour day-of-month month
            day-of-week) or one of @yearly, @annually, @monthly, @weekly, @daily,
            @midnight, @hourly.

    Returns:
        The expression with single spaces, names turned into numbers and day-of-week 7
        written as 0; shortcuts are expanded to five fields.

    Raises:
        CronError: The expression is malformed, uses an extension outside classic cron,
            or restricts both day-of-month and day-of-week (where Temporal and classic
            cron disagree).
    """
    fields = expr.split()
    if not fields:
        raise CronError("schedule: cron expression is empty; give five fields such as '0 2 * * *'")
    first = fields[0]
    if first.upper().startswith(("CRON_TZ=", "TZ=")):
        prefix = first.split("=", 1)[0] + "="
        raise CronError(
            f"schedule: the time-zone prefix '{prefix}' is not supported; "
            "give a plain five-field expression"
        )
    if first.startswith("@"):
        return _expand_shortcut(fields)
    if len(fields) != len(_FIELDS):
        raise CronError(
            f"schedule: cron expression has {len(fields)} field{'s' if len(fields) != 1 else ''} "
            "but exactly five are needed (minute hour day-of-month month day-of-week), "
            "and note that Temporal would read a sixth field as a year, not as seconds"
        )
    normalised = [_normalise_field(spec, text) for spec, text in zip(_FIELDS, fields, strict=True)]
    day_of_month, day_of_week = fields[2], fields[4]
    # Vixie cron, cronie and robfig/cron disagree on whether '*/2' counts as restricted,
    # so anything but a bare '*' is treated as restricted.
    if day_of_month != "*" and day_of_week != "*":
        raise CronError(
            f"schedule: day-of-month field '{day_of_month}' and day-of-week field "
            f"'{day_of_week}' are both restricted, and classic cron runs when either "
            "matches but Temporal only when both match, so use two jobs instead, one with "
            "day-of-month '*' and one with day-of-week '*'"
        )
    return " ".join(normalised)


def _expand_shortcut(fields: list[str]) -> str:
    name = fields[0].lower()
    if name in ("@every", "@reboot"):
        raise CronError(
            f"schedule: '{name}' is not supported; give five fields instead, such as '*/15 * * * *'"
        )
    if name not in _SHORTCUTS:
        raise CronError(
            f"schedule: unknown shortcut '{fields[0]}'; use one of {', '.join(_SHORTCUTS)}"
        )
    if len(fields) != 1:
        raise CronError(f"schedule: shortcut '{fields[0]}' must stand alone, without more fields")
    return _SHORTCUTS[name]


def _normalise_field(spec: _Field, text: str) -> str:
    for marker in ("?", "#"):
        if marker in text:
            raise _quartz(spec, text, marker)
    items = [_normalise_item(spec, text, item) for item in text.split(",")]
    return ",".join(items)


def _normalise_item(spec: _Field, text: str, item: str) -> str:
    base, slash, step_text = item.partition("/")
    step: int | None = None
    if slash:
        if not _NUMBER.fullmatch(step_text):
            raise _fail(spec, text, f"has step '{step_text}', which is not a whole number")
        step = _bounded_int(step_text, spec.high - spec.low + 1)
        if step == 0:
            raise _fail(spec, text, "has a zero step, and a step must be at least 1")
        if step > spec.high - spec.low:
            raise _fail(spec, text, f"has step {step}, out of range 1-{spec.high - spec.low}")
    suffix = f"/{step}" if step is not None else ""
    if base == "*":
        return "*" + suffix
    start_text, dash, end_text = base.partition("-")
    start = _value(spec, text, start_text)
    if not dash:
        if step is not None:
            raise _fail(
                spec,
                text,
                f"has a step without a range, which cron implementations read differently, "
                f"so write '{start}-{spec.high}/{step}' or '*/{step}'",
            )
        return _sunday_as_zero(spec, start, start, None)
    end = _value(spec, text, end_text)
    if start > end:
        raise _fail(spec, text, f"has a reversed range {start}-{end}; write the smaller one first")
    return _sunday_as_zero(spec, start, end, step)


def _sunday_as_zero(spec: _Field, start: int, end: int, step: int | None) -> str:
    """Render a range, moving day-of-week 7 (Sunday) to 0 without changing the days."""
    suffix = f"/{step}" if step is not None else ""
    if spec is not _DAY_OF_WEEK or end != 7:
        return f"{start}-{end}{suffix}" if start != end else str(start)
    if start == 7:
        return "0"
    hits_seven = (7 - start) % (step or 1) == 0
    rest = f"{start}-6{suffix}" if start != 6 else "6"
    return f"{rest},0" if hits_seven and start != 0 else rest


def _value(spec: _Field, text: str, token: str) -> int:
    if _NUMBER.fullmatch(token):
        value = _bounded_int(token, spec.high + 1)
        if not spec.low <= value <= spec.high:
            raise _fail(spec, text, f"{_which(token, text)}out of range {spec.low}-{spec.high}")
        return value
    if token.upper() in spec.names:
        return spec.names[token.upper()]
    if _QUARTZ_L_OR_W.fullmatch(token):
        raise _quartz(spec, text, "W" if "W" in token.upper() else "L")
    if not token:
        raise _fail(spec, text, "is malformed: a list item or range end is empty")
    expected = f"a number or a name {spec.names_hint}" if spec.names else "a number"
    raise _fail(spec, text, f"{_which(token, text)}not {expected}")


def _which(token: str, text: str) -> str:
    """Lead-in naming the offending part when it is not the whole field."""
    return "is " if token == text else f"has '{token}', which is "


def _bounded_int(digits: str, cap: int) -> int:
    # int() on thousands of digits raises (and costs); anything past 4 digits is out of range.
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= 4 else cap


def _quartz(spec: _Field, text: str, marker: str) -> CronError:
    return _fail(spec, text, f"uses '{marker}', a Quartz extension that classic cron lacks")


def _fail(spec: _Field, text: str, problem: str) -> CronError:
    return CronError(f"schedule: {spec.name} field '{text}' {problem}")
