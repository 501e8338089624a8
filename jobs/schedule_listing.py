"""Reading schedules' states from Temporal's schedule listing, a page at a time.

The listing's protos are read as they come: the SDK's conversion of each entry's spec and
actions would cost more than the call. Every function makes one ``ListSchedules`` call per
page, so its calls grow with pages, not schedules. The listing is served from Temporal's
visibility store, which can lag a change by a moment; the mirror reads it again next tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from temporalio.api.workflowservice.v1 import ListSchedulesRequest
from temporalio.client import Client

# job_id -> (paused, note, next firing)
ScheduleStates = dict[str, tuple[bool, str | None, datetime | None]]

# Schedules per page of a listing.
LIST_PAGE_SIZE = 1000
# Schedule ids per `ScheduleId IN (...)` query: job ids are at most 32 characters, so a
# query stays under 8 KB.
IDS_PER_QUERY = 200
# The visibility query that lists only paused schedules (a system search attribute).
PAUSED_QUERY = "TemporalSchedulePaused = true"


async def list_page(
    client: Client, timeout: timedelta, token: bytes = b"", query: str = ""
) -> tuple[ScheduleStates, bytes]:
    """One page of the listing (``query`` filters it) and the token of the next (b"": none)."""
    page = await client.workflow_service.list_schedules(
        ListSchedulesRequest(
            namespace=client.namespace,
            maximum_page_size=LIST_PAGE_SIZE,
            next_page_token=token,
            query=query,
        ),
        retry=True,
        timeout=timeout,
    )
    states: ScheduleStates = {}
    for entry in page.schedules:
        if not entry.HasField("info"):
            continue
        info = entry.info
        upcoming = None
        if info.future_action_times:
            upcoming = info.future_action_times[0].ToDatetime(tzinfo=UTC)
        states[entry.schedule_id] = (info.paused, info.notes or None, upcoming)
    return states, bytes(page.next_page_token)


async def list_all(client: Client, timeout: timedelta, query: str = "") -> ScheduleStates:
    """Every schedule the query matches (all of them without one), page after page."""
    states: ScheduleStates = {}
    token = b""
    while True:
        page, token = await list_page(client, timeout, token, query)
        states.update(page)
        if not token:
            return states


def _quoted(job_id: str) -> str:
    return "'" + job_id.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def list_ids(client: Client, timeout: timedelta, job_ids: Sequence[str]) -> ScheduleStates:
    """The states of these schedules (missing ones are left out): a query per IDS_PER_QUERY."""
    states: ScheduleStates = {}
    for start in range(0, len(job_ids), IDS_PER_QUERY):
        chunk = job_ids[start : start + IDS_PER_QUERY]
        query = f"ScheduleId IN ({', '.join(_quoted(job_id) for job_id in chunk)})"
        states.update(await list_all(client, timeout, query))
    return states
