"""Changes of a job's definition, written to SQL and to its Temporal Schedule without either
overwriting the other, whatever the number of API replicas.

**One writer per job at a time.** PUT, DELETE and the journal replay each take the job row's
write lock (``store.jobs.lock_job``) and hold it through their Temporal call, committing SQL
only after Temporal answered. Writers of one job's schedule are therefore serialized, and
Temporal receives their writes in the order of the versions they commit: the last write
Temporal sees is always that of the winning SQL state, so two racing PUTs cannot leave
Temporal's cron different from SQL's. Under the lock the row is read again and the version
compared and set (``UPDATE ... WHERE version = :read``), so a PUT always applies its fields
onto the latest definition. Holding the lock was chosen over "write Temporal, re-read SQL,
re-apply if the version moved": that loop can clear the journal while a loser's late write
is still on its way to Temporal, and it costs a second describe/update round per race. The
price is that a second writer of the *same job* waits for the first one's Temporal call (on
SQLite, any writer waits: SQLite locks the whole database).

**Only what changed.** A PUT tells Temporal only the parts of the schedule its body touched
(``jobs.schedule_parts``), applied onto the description Temporal hands the update callback:
a pause made in the Temporal UI or CLI survives a PUT that did not send ``paused``.

**The journal and its grace.** Every write to Temporal is journalled first (committed), with
what it is about. A request holds its entry for at most :func:`hold_limit` (every such request
runs under that deadline and fails with 503 past it, its SQL transaction rolled back). The
replay touches only entries older than :func:`replay_grace`, twice that limit (the second
half covers clock skew between replicas), so it never races a request in flight on any
replica, at start-up included. It makes spec, action and policy match SQL and leaves the pause
state alone unless the journalled change was about it: Temporal owns the pause state, SQL only
mirrors it.

**The version.** ``jobs.version`` counts the changes made through PUT. Pause and resume (the
endpoints, the Temporal UI, the CLI) do not change it: the pause state is Temporal's, it
changes outside the API, and a version that only the API bumps could not follow it anyway.
The ETag is ``"<job_id>.<version>"``: it validates the job's definition, not the fields the
API reads from Temporal or the run (status, next run times, ``paused``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import DuplicateJobName, JobNotFound, PreconditionFailed, ServiceUnavailable
from jobs.run_starts import RunStarts
from jobs.schedule_parts import DEFINITION, SchedulePart, parts_of
from jobs.temporal import JobSchedules
from store import audit, journal, schedule_events
from store import jobs as job_store
from store.models import Job

logger = logging.getLogger(__name__)

# The most Temporal calls a request makes while it holds a journal entry (connecting, then
# describe and update), each bounded by RPC_TIMEOUT_SECONDS.
_HOLD_RPCS = 4

# Checks a writer repeats on the row it has locked (409 while a run is active, for example).
Recheck = Callable[[AsyncSession, Job], Awaitable[None]]


def hold_limit(rpc_timeout: timedelta) -> timedelta:
    """The longest a request holds a journal entry: its deadline from journal to clear."""
    return _HOLD_RPCS * rpc_timeout


def replay_grace(rpc_timeout: timedelta) -> timedelta:
    """How old an entry must be before the replay touches it."""
    return 2 * hold_limit(rpc_timeout)


@contextlib.asynccontextmanager
async def holding_entry(rpc_timeout: timedelta) -> AsyncIterator[None]:
    """The deadline of a request that holds a journal entry; past it, 503."""
    limit = hold_limit(rpc_timeout)
    try:
        async with asyncio.timeout(limit.total_seconds()):
            yield
    except TimeoutError:
        raise ServiceUnavailable(
            f"the change took longer than {limit.total_seconds():g} s and was rolled back; "
            "the schedule is repaired from SQL shortly"
        ) from None


def etag(job: Job) -> str:
    """A strong validator of the job's definition."""
    return etag_of(job.job_id, job.version)


def etag_of(job_id: str, version: int) -> str:
    return f'"{job_id}.{version}"'


def check_if_match(job: Job, if_match: str | None) -> None:
    """Raise PreconditionFailed unless ``If-Match`` (when sent) names the current version."""
    if if_match is None:
        return
    current = etag(job)
    # Strong comparison: a weak tag (W/"...") never matches; "*" matches any current job.
    tags = {tag.strip() for tag in if_match.split(",")}
    if "*" not in tags and current not in tags:
        raise PreconditionFailed(job.job_id, current)


class DefinitionSync:
    """PUT, DELETE and the journal replay: SQL and the schedule changed as one writer."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        schedules: JobSchedules,
        rpc_timeout: timedelta,
        starts: RunStarts | None = None,
    ) -> None:
        self._sessions = sessions
        self._schedules = schedules
        self._rpc_timeout = rpc_timeout
        # Starts a one-off job's run whose creation died before it (the replay).
        self._starts = starts

    @staticmethod
    def _never_ran(job: Job) -> bool:
        return job.latest_run_id is None and job.schedule is None

    async def update(
        self,
        session: AsyncSession,
        job_id: str,
        changes: dict[str, Any],
        if_match: str | None,
        recheck: Recheck,
        actor: str,
    ) -> Job:
        """Apply ``changes`` (not empty) to the latest definition and to the schedule."""
        own_parts = parts_of(changes)
        async with holding_entry(self._rpc_timeout):
            entry = None
            if own_parts:
                entry = await journal.journal_schedule_change(session, job_id, int(own_parts))
            job = await self._lock(session, job_id, entry, if_match, recheck)
            previous_paused = job.paused
            try:
                written = await job_store.update_definition(
                    session, job_id, job.version, {**changes, "updated_by": actor}
                )
            except IntegrityError:
                await session.rollback()
                raise DuplicateJobName(changes.get("name", job.name)) from None
            if not written:
                raise RuntimeError(f"the version of {job_id} moved under its row lock")
            if "paused" in changes and changes["paused"] != previous_paused:
                schedule_events.add_pause_event(
                    session, job_id, changes["paused"], "Changed with PUT /jobs/{job_id}", actor
                )
            audit.record_change(session, actor, "update", job_id, ", ".join(sorted(changes)))
            job = await job_store.get_job_fresh(session, job_id)
            if entry is not None:
                # The parts of a writer that failed half-way are repaired on the way.
                await self._schedules.update(job, SchedulePart(entry.parts))
            await session.commit()
            if entry is not None:
                await journal.clear_schedule_change(session, job_id, entry.token)
            return job

    async def delete(
        self,
        session: AsyncSession,
        job_id: str,
        if_match: str | None,
        recheck: Recheck,
        actor: str,
    ) -> None:
        """Delete the row and the schedule; the row stays if the schedule cannot go."""
        async with holding_entry(self._rpc_timeout):
            entry = await journal.journal_schedule_change(session, job_id, int(DEFINITION))
            job = await self._lock(session, job_id, entry, if_match, recheck)
            await job_store.delete_job_rows(session, job_id)
            audit.record_change(session, actor, "delete", job_id, job.name)
            await session.flush()
            await self._schedules.delete(job_id)
            await session.commit()
            await journal.clear_schedule_change(session, job_id, entry.token)

    async def _lock(
        self,
        session: AsyncSession,
        job_id: str,
        entry: journal.JournalEntry | None,
        if_match: str | None,
        recheck: Recheck,
    ) -> Job:
        """Lock the row and read it again: what a racing writer committed is seen here.

        A failed check leaves the journal entry to the replay, which finds SQL and Temporal
        agreeing (nothing was written) unless an earlier writer failed half-way.
        """
        if not await job_store.lock_job(session, job_id):
            await session.rollback()
            if entry is not None:
                # A racing DELETE won, and deleted the schedule before it committed.
                await journal.clear_schedule_change(session, job_id, entry.token)
            raise JobNotFound(job_id)
        job = await job_store.get_job_fresh(session, job_id)
        try:
            check_if_match(job, if_match)
            await recheck(session, job)
        except BaseException:
            await session.rollback()
            raise
        return job

    async def replay(self, older_than: timedelta) -> int:
        """Replay journal entries older than ``older_than``; returns how many were repaired."""
        repaired = 0
        async with self._sessions() as session:
            entries = await journal.pending_entries(session, older_than)
        for entry in entries:
            async with holding_entry(self._rpc_timeout), self._sessions() as session:
                unstarted = await self._repair(session, entry)
                await session.commit()
                if unstarted is not None and self._starts is not None:
                    # Once the row's lock is let go: the start claims the job in SQL.
                    await self._starts.start_claimed(unstarted)
                await journal.clear_entry(session, entry)
            logger.info("reconciled schedule of %s with SQL", entry.job_id)
            repaired += 1
        return repaired

    async def _repair(self, session: AsyncSession, entry: journal.JournalEntry) -> Job | None:
        """Make the schedule match the row (or its absence), holding the row's lock; the
        one-off job whose run never started, if that is what its creation left."""
        job_id = entry.job_id
        if not await job_store.lock_job(session, job_id):
            await self._schedules.delete(job_id)
            return None
        job = await job_store.get_job_fresh(session, job_id)
        if await self._schedules.exists(job_id):
            # The pause state only if the journalled change was about it: a pause made in
            # the Temporal UI or CLI since then stays.
            parts = DEFINITION | (SchedulePart(entry.parts) & SchedulePart.PAUSED)
            await self._schedules.update(job, parts)
            # Its creation died between the schedule and its claimed run's start.
            never_ran = self._never_ran(job) and job.active_run_id is not None
        else:
            never_ran = self._never_ran(job)
            await self._schedules.create(job)
        return job if never_ran else None
