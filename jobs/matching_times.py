"""Firing times of a Temporal schedule inside a time range, as the server computes them.

``WorkflowService.ListScheduleMatchingTimes`` evaluates the schedule's own spec over any
range, past or future, whether the schedule is paused or not and whatever its catchup
window. It is the computation a backfill runs, so the list names the runs a backfill starts
(a Temporal backfill also starts a firing at exactly its ``end_at``, which this list, being
``start <= t < end``, leaves out). Measured on the dev server (temporal CLI 1.9.1, server
1.32):

- the server answers ``start < t <= end``; ``schedule_matching_times`` shifts both ends back
  by one nanosecond so that its answer is ``start <= t < end``;
- one call lists at most 1,000 times (the server's ``maxListMatchingTimesCount``); longer
  answers are fetched page by page, each page starting just after the last time of the
  previous one, and no more pages are asked for than ``limit + 1`` times need;
- nothing is listed before 1970-01-01 or after the year 2100 (Temporal's calendar limits);
- a local time skipped by a daylight-saving change does not fire; one repeated by the change
  fires at both occurrences in zones west of UTC (America/New_York) and only at the second
  in zones east of it (Europe/Berlin); the backfill starts exactly those runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.workflowservice.v1 import ListScheduleMatchingTimesRequest
from temporalio.client import Client

__all__ = ["schedule_matching_times"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NANOS_PER_SECOND = 1_000_000_000


def _just_before(moment: datetime) -> Timestamp:
    """The protobuf timestamp one nanosecond before ``moment`` (which may be year 1)."""
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    nanos = micros * 1000 - 1
    seconds, remainder = divmod(nanos, _NANOS_PER_SECOND)
    return Timestamp(seconds=seconds, nanos=remainder)


async def schedule_matching_times(
    client: Client,
    schedule_id: str,
    start: datetime,
    end: datetime,
    limit: int,
    rpc_timeout: timedelta,
) -> list[datetime]:
    """UTC firing times ``start <= t < end`` of the schedule ``schedule_id``, in order.

    Returns at most ``limit + 1`` times, so that a caller can tell "more than ``limit``" from
    "exactly ``limit``" without the server listing the whole range. The schedule may be
    paused; its catchup window and pause state do not change the answer.

    Raises:
        ValueError: ``start`` or ``end`` has no time zone, or ``limit`` is negative.
        temporalio.service.RPCError: The schedule does not exist (NOT_FOUND) or the server
            could not be asked within ``rpc_timeout`` per call.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if limit < 0:
        raise ValueError("limit must not be negative")
    wanted = limit + 1
    times: list[datetime] = []
    if end <= start:
        return times
    cursor = _just_before(start)  # the server leaves out its start time
    last = _just_before(end)  # ... and includes its end time
    while len(times) < wanted:
        response = await client.workflow_service.list_schedule_matching_times(
            ListScheduleMatchingTimesRequest(
                namespace=client.namespace,
                schedule_id=schedule_id,
                start_time=cursor,
                end_time=last,
            ),
            retry=True,
            timeout=rpc_timeout,
        )
        page = list(response.start_time)
        if not page:
            break  # the range is covered (a capped page is never empty)
        for stamp in page:
            moment = stamp.ToDatetime(tzinfo=UTC)
            if start <= moment < end:
                times.append(moment)
        newest = page[-1]
        if (newest.seconds, newest.nanos) <= (cursor.seconds, cursor.nanos):
            break  # a page that does not move forward would repeat forever
        cursor = newest  # the next page starts just after this page's last time
    return times[:wanted]
