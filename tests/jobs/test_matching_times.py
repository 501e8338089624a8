"""Firing times listed by the dev server's ListScheduleMatchingTimes, against hand-written lists."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from temporalio.api.workflowservice.v1 import (
    ListScheduleMatchingTimesRequest,
    ListScheduleMatchingTimesResponse,
)
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.service import RPCError, RPCStatusCode

from jobs.matching_times import schedule_matching_times

TIMEOUT = timedelta(seconds=10)
# The dev server lists at most this many times per ListScheduleMatchingTimes call.
SERVER_PAGE = 1000

MakeSchedule = Callable[..., Awaitable[str]]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture
async def make_schedule(temporal_client: Client) -> AsyncIterator[MakeSchedule]:
    """Creates schedules (paused unless asked otherwise) and deletes them afterwards."""
    created: list[str] = []

    async def make(
        cron: str,
        tz: str = "UTC",
        *,
        paused: bool = True,
        catchup_window: timedelta = timedelta(days=365),
    ) -> str:
        schedule_id = f"matching-{uuid.uuid4().hex[:8]}"
        await temporal_client.create_schedule(
            schedule_id,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    "TrainingJobWorkflow", id=f"wf-{schedule_id}", task_queue="x"
                ),
                spec=ScheduleSpec(cron_expressions=[cron], time_zone_name=tz),
                policy=SchedulePolicy(catchup_window=catchup_window),
                state=ScheduleState(paused=paused),
            ),
        )
        created.append(schedule_id)
        return schedule_id

    yield make
    for schedule_id in created:
        await temporal_client.get_schedule_handle(schedule_id).delete()


async def times(
    client: Client, schedule_id: str, start: datetime, end: datetime, limit: int = 1000
) -> list[datetime]:
    return await schedule_matching_times(client, schedule_id, start, end, limit, TIMEOUT)


async def test_hourly_cron_over_a_day(temporal_client: Client, make_schedule: MakeSchedule) -> None:
    schedule_id = await make_schedule("0 * * * *")
    result = await times(temporal_client, schedule_id, utc(2025, 1, 1), utc(2025, 1, 2))
    assert result == [utc(2025, 1, 1, hour) for hour in range(24)]
    assert all(t.tzinfo is UTC for t in result)


async def test_skipped_local_time_does_not_fire(
    temporal_client: Client, make_schedule: MakeSchedule
) -> None:
    # 2027-03-14 02:30 does not exist in New York (EST -5 -> EDT -4 at 02:00).
    new_york = await make_schedule("30 2 * * *", "America/New_York")
    assert await times(temporal_client, new_york, utc(2027, 3, 12), utc(2027, 3, 16)) == [
        utc(2027, 3, 12, 7, 30),
        utc(2027, 3, 13, 7, 30),
        utc(2027, 3, 15, 6, 30),
    ]
    # 2027-03-28 02:00 does not exist in Berlin (CET +1 -> CEST +2 at 02:00).
    berlin = await make_schedule("0 2 * * *", "Europe/Berlin")
    assert await times(temporal_client, berlin, utc(2027, 3, 26), utc(2027, 3, 30)) == [
        utc(2027, 3, 26, 1),
        utc(2027, 3, 27, 1),
        utc(2027, 3, 29, 0),
    ]


async def test_repeated_local_time_as_temporal_fires_it(
    temporal_client: Client, make_schedule: MakeSchedule
) -> None:
    # 2027-11-07 01:30 happens twice in New York (EDT then EST): Temporal fires both.
    new_york = await make_schedule("30 1 * * *", "America/New_York")
    assert await times(temporal_client, new_york, utc(2027, 11, 6), utc(2027, 11, 9)) == [
        utc(2027, 11, 6, 5, 30),
        utc(2027, 11, 7, 5, 30),
        utc(2027, 11, 7, 6, 30),
        utc(2027, 11, 8, 6, 30),
    ]
    # 2027-10-31 02:30 happens twice in Berlin (CEST then CET): Temporal fires the second.
    berlin = await make_schedule("30 2 * * *", "Europe/Berlin")
    assert await times(temporal_client, berlin, utc(2027, 10, 30), utc(2027, 11, 2)) == [
        utc(2027, 10, 30, 0, 30),
        utc(2027, 10, 31, 1, 30),
        utc(2027, 11, 1, 1, 30),
    ]


async def test_start_is_included_and_end_is_not(
    temporal_client: Client, make_schedule: MakeSchedule
) -> None:
    schedule_id = await make_schedule("0 * * * *")
    assert await times(temporal_client, schedule_id, utc(2025, 1, 1, 1), utc(2025, 1, 1, 3)) == [
        utc(2025, 1, 1, 1),
        utc(2025, 1, 1, 2),
    ]
    micro = timedelta(microseconds=1)
    assert await times(
        temporal_client, schedule_id, utc(2025, 1, 1, 1) + micro, utc(2025, 1, 1, 3) + micro
    ) == [utc(2025, 1, 1, 2), utc(2025, 1, 1, 3)]
    assert (
        await times(temporal_client, schedule_id, utc(2025, 1, 1, 1) - micro, utc(2025, 1, 1, 1))
        == []
    )
    assert await times(
        temporal_client, schedule_id, utc(2025, 1, 1, 1), utc(2025, 1, 1, 1) + micro
    ) == [utc(2025, 1, 1, 1)]
    assert await times(temporal_client, schedule_id, utc(2025, 1, 1, 3), utc(2025, 1, 1, 3)) == []
    assert await times(temporal_client, schedule_id, utc(2025, 1, 1, 3), utc(2025, 1, 1, 1)) == []


async def test_bounds_in_other_offsets_answer_in_utc(
    temporal_client: Client, make_schedule: MakeSchedule
) -> None:
    schedule_id = await make_schedule("0 * * * *")
    plus_five = timezone(timedelta(hours=5))
    start = datetime(2025, 1, 1, 6, tzinfo=plus_five)  # 01:00 UTC
    end = datetime(2025, 1, 1, 8, tzinfo=plus_five)  # 03:00 UTC
    result = await times(temporal_client, schedule_id, start, end)
    assert result == [utc(2025, 1, 1, 1), utc(2025, 1, 1, 2)]
    assert all(t.tzinfo is UTC for t in result)


async def test_at_most_limit_plus_one(temporal_client: Client, make_schedule: MakeSchedule) -> None:
    schedule_id = await make_schedule("* * * * *")
    start, end = utc(2025, 1, 1), utc(2025, 1, 2)
    assert await times(temporal_client, schedule_id, start, end, limit=5) == [
        start + timedelta(minutes=m) for m in range(6)
    ]
    assert await times(temporal_client, schedule_id, start, end, limit=0) == [start]
    # Exactly `limit` firings: all of them, no more.
    short_end = start + timedelta(minutes=5)
    assert len(await times(temporal_client, schedule_id, start, short_end, limit=5)) == 5


@pytest.fixture
def calls(temporal_client: Client, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of times each ListScheduleMatchingTimes call returned, call by call."""
    service = temporal_client.workflow_service
    original = service.list_schedule_matching_times
    counts: list[int] = []

    async def counting(
        req: ListScheduleMatchingTimesRequest, **kwargs: Any
    ) -> ListScheduleMatchingTimesResponse:
        response = await original(req, **kwargs)
        counts.append(len(response.start_time))
        return response

    monkeypatch.setattr(service, "list_schedule_matching_times", counting)
    return counts


async def test_pages_past_the_server_cap(
    temporal_client: Client, make_schedule: MakeSchedule, calls: list[int]
) -> None:
    schedule_id = await make_schedule("* * * * *")
    start, end = utc(2025, 1, 1), utc(2025, 1, 4)
    minutes = [start + timedelta(minutes=m) for m in range(3 * 24 * 60)]

    # One call answers at most SERVER_PAGE times, however long the range.
    assert len(await times(temporal_client, schedule_id, start, end, limit=SERVER_PAGE)) == (
        SERVER_PAGE + 1
    )
    assert calls == [SERVER_PAGE, SERVER_PAGE]
    calls.clear()

    # 4,320 firings under a larger limit: five pages, and an empty one that ends the range.
    assert await times(temporal_client, schedule_id, start, end, limit=10_000) == minutes
    assert calls == [SERVER_PAGE] * 4 + [320, 0]
    calls.clear()

    # Two full pages and one more: the third page holds only the range's last firing.
    expected = minutes[: 2 * SERVER_PAGE + 1]
    short_end = expected[-1] + timedelta(minutes=1)
    assert await times(temporal_client, schedule_id, start, short_end, limit=5000) == expected
    assert calls == [SERVER_PAGE, SERVER_PAGE, 1, 0]


async def test_long_range_is_bounded_by_limit(
    temporal_client: Client, make_schedule: MakeSchedule
) -> None:
    schedule_id = await make_schedule("0 * * * *")
    first = datetime.min.replace(tzinfo=UTC)
    last = datetime.max.replace(tzinfo=UTC)
    result = await times(temporal_client, schedule_id, first, last)
    # Temporal lists nothing before 1970, whatever the range asks for.
    assert result == [utc(1970, 1, 1) + timedelta(hours=h) for h in range(1001)]
    assert await times(temporal_client, schedule_id, utc(2101, 1, 1), last) == []


async def test_answer_ignores_pause_and_catchup_window(
    temporal_client: Client, make_schedule: MakeSchedule
) -> None:
    paused = await make_schedule("0 0 1 1 *")
    running = await make_schedule("0 0 1 1 *", paused=False, catchup_window=timedelta(seconds=10))
    expected = [utc(year, 1, 1) for year in range(2000, 2030)]
    for schedule_id in (paused, running):
        assert await times(temporal_client, schedule_id, utc(2000, 1, 1), utc(2030, 1, 1)) == (
            expected
        )


async def test_unknown_schedule_is_not_found(temporal_client: Client) -> None:
    with pytest.raises(RPCError) as raised:
        await times(temporal_client, "matching-missing", utc(2025, 1, 1), utc(2025, 1, 2))
    assert raised.value.status == RPCStatusCode.NOT_FOUND


async def test_naive_bounds_are_refused(temporal_client: Client) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await times(temporal_client, "any", datetime(2025, 1, 1), utc(2025, 1, 2))
