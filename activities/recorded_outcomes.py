"""An attempt whose end is already recorded is reported, never run again.

The end is recorded before the unit is removed and the result reported: a try interrupted
after that (its result lost with a Temporal outage, say) must not start the trainer again,
so its retry reports what was recorded instead.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities import incarnations
from runtimes.base import ContainerRuntime, UnitExit
from store import runs as run_store
from store.log_files import read_tail
from workflows.models import AttemptOutcome, RunAttemptInput


async def recorded_outcome(
    runtime: ContainerRuntime,
    sessions: async_sessionmaker[AsyncSession],
    request: RunAttemptInput,
    log_path: Path,
) -> AttemptOutcome | None:
    """The outcome an earlier try of this activity recorded, if the attempt is over."""
    async with sessions() as session:
        row = await run_store.find_attempt(session, request.run_id, request.attempt)
    if row is None or row.ended_at is None or row.exit_code is None:
        return None
    activity.logger.info(
        "attempt %d already ended with exit code %d; reporting it", request.attempt, row.exit_code
    )
    ended = UnitExit(row.exit_code)
    try:
        # The earlier try may not have got as far as removing the unit, which still knows
        # whether it ran out of memory.
        units = await incarnations.units_of(runtime, request.run_id, request.attempt)
        if units:
            ended = await runtime.exit_details(units[-1][1])
        await incarnations.remove_units(runtime, request.run_id, request.attempt)
    except Exception as err:  # the reconciler removes it later; the outcome stands
        activity.logger.warning("could not read or remove the attempt's unit: %s", err)
    # Not recorded as such: an attempt stopped at its limit ran past it and failed.
    limit = request.spec.timeout_seconds
    ran = (row.ended_at - row.started_at).total_seconds()
    return AttemptOutcome(
        exit_code=row.exit_code,
        log_tail=await asyncio.to_thread(read_tail, log_path),
        reattached=True,
        timed_out=limit is not None and ran > limit and row.exit_code != 0,
        oom_killed=ended.oom_killed and ended.code == row.exit_code,
        memory_limit=ended.memory_limit,
    )
