"""The reconciler's schedule mirror: each tick reads only what can have changed, plus a page.

A tick of the leader (jobs/control_plane.py) makes, whatever the number of jobs:

1. one filtered listing of the paused schedules (``TemporalSchedulePaused = true``, a call
   per page of them): a pause made in the Temporal UI or with ``temporal schedule toggle``
   reaches SQL at the next tick;
2. ``ScheduleId IN (...)`` listings (a call per 200 ids, at most STALE_PER_TICK ids) of the
   jobs SQL mirrors as paused that the paused listing no longer shows (resumed outside the
   API: their next firing comes with them), and of the jobs whose ``next_run_at`` has passed
   or is not known yet (a schedule that fired, a job just created);
3. one page (LIST_PAGE_SIZE) of the whole listing, from a cursor kept between ticks: the
   sweep that catches anything else (a cron changed in the UI) within ceil(schedules / 1,000)
   ticks; the cursor starts again at the end, after an error, and in a new leader.

Then one bulk write of the rows that changed. A listing is served from Temporal's visibility
store, which can lag a change by a moment; the next tick reads it again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.schedule_listing import ScheduleStates
from jobs.temporal import JobSchedules
from store import schedule_events

# Jobs asked about by id per tick (resumed outside the API first, then due or unknown): on
# the dev server, 500 ids cost about what a page of the whole listing costs.
STALE_PER_TICK = 500


class ScheduleMirror:
    """Keeps SQL's ``paused`` and ``next_run_at`` in line with Temporal, a bounded part a tick."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        schedules: JobSchedules,
        *,
        sweep_pages: int = 1,
    ) -> None:
        self._sessions = sessions
        self._schedules = schedules
        self.sweep_pages = sweep_pages  # pages of the whole listing per tick (0: no sweep)
        self._cursor = b""  # where the sweep goes on; b"": the start of the listing
        self.sweeps_done = 0  # whole listings the sweep went through

    async def sync(self) -> int:
        """One tick of the mirror; how many rows changed."""
        async with self._sessions() as session:
            mirrored_paused, stale = await schedule_events.mirror_candidates(
                session, datetime.now(UTC), STALE_PER_TICK
            )
        states = await self._schedules.paused_states()
        resumed = [job_id for job_id in mirrored_paused if job_id not in states]
        wanted = [job_id for job_id in (*resumed, *stale) if job_id not in states]
        if wanted:
            states.update(await self._schedules.states_of(wanted[:STALE_PER_TICK]))
        states.update(await self._sweep())
        async with self._sessions() as session:
            return await schedule_events.mirror_states(session, states, actor="ui/cli")

    async def _sweep(self) -> ScheduleStates:
        """The sweep's pages of this tick, from where the last tick left it."""
        states: ScheduleStates = {}
        for _ in range(self.sweep_pages):
            try:
                page, self._cursor = await self._schedules.states_page(self._cursor)
            except Exception:
                self._cursor = b""  # a token the server no longer takes: start again
                raise
            states.update(page)
            if not self._cursor:
                self.sweeps_done += 1
                break
        return states
