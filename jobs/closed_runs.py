"""Runs that SQL shows active while their workflow has closed (terminated from the UI or CLI).

They are found with visibility queries, one per batch of active runs (``WorkflowId IN
(...)``), so a tick costs a number of RPCs that grows with pages, not with runs; only a run
that visibility does not list at all (its history gone) is described on its own. The end is
recorded with a compare-and-set (:func:`store.runs.finish_run_if_active`): a final status
the run wrote itself in the meantime always wins.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from store import runs as run_store
from store.models import Run, utcnow
from workflows.models import JobStatus

logger = logging.getLogger(__name__)

OUTCOME = {
    WorkflowExecutionStatus.COMPLETED: (JobStatus.COMPLETED, None),
    WorkflowExecutionStatus.CANCELED: (JobStatus.CANCELLED, "Run was cancelled in Temporal"),
    WorkflowExecutionStatus.TERMINATED: (
        JobStatus.CANCELLED,
        "Run was terminated in Temporal (outside the orchestrator)",
    ),
    WorkflowExecutionStatus.FAILED: (JobStatus.FAILED, "Run's workflow failed in Temporal"),
    WorkflowExecutionStatus.TIMED_OUT: (JobStatus.FAILED, "Run's workflow timed out in Temporal"),
}
# Workflow ids per visibility query: the query stays a few kilobytes long.
QUERY_BATCH = 200
VISIBILITY_PAGE = 1000
# A run this young may not be visible yet: it is not described when visibility misses it.
VISIBILITY_GRACE = timedelta(seconds=60)


def _quotable(workflow_id: str) -> bool:
    return "'" not in workflow_id and "\\" not in workflow_id


class ClosedRunFinder:
    """Finds and finishes runs whose workflow closed without recording their end."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], client: Client) -> None:
        self._sessions = sessions
        self._client = client
        self.rpcs = 0  # Temporal calls made, for the benchmark

    async def finish(self) -> int:
        """One pass; returns how many runs were finished."""
        async with self._sessions() as session:
            active = list(await run_store.active_runs(session))
        closed = await self._closed(active)
        finished = 0
        for run, status in closed:
            outcome, message = OUTCOME.get(status, (JobStatus.FAILED, f"Run ended as {status}"))
            async with self._sessions() as session:
                changed = await run_store.finish_run_if_active(
                    session,
                    job_id=run.job_id,
                    run_id=run.run_id,
                    status=outcome,
                    at=utcnow(),
                    error_message=message,
                )
            if changed:
                logger.info("finished run %s of %s as %s", run.run_id, run.job_id, outcome)
                finished += 1
        return finished

    async def _closed(self, active: Sequence[Run]) -> list[tuple[Run, WorkflowExecutionStatus]]:
        quotable = [run for run in active if _quotable(run.run_id)]
        listed: dict[tuple[str, str], WorkflowExecutionStatus | None] = {}
        for start in range(0, len(quotable), QUERY_BATCH):
            batch = quotable[start : start + QUERY_BATCH]
            ids = ", ".join(f"'{run.run_id}'" for run in sorted(batch, key=lambda r: r.run_id))
            query = f"WorkflowId IN ({ids})"
            found = 0
            async for execution in self._client.list_workflows(query, page_size=VISIBILITY_PAGE):
                listed[(execution.id, execution.run_id)] = execution.status
                found += 1
            self.rpcs += 1 + found // VISIBILITY_PAGE  # one call per page
        closed: list[tuple[Run, WorkflowExecutionStatus]] = []
        young = utcnow() - VISIBILITY_GRACE
        for run in active:
            key = (run.run_id, run.execution_id)
            if key in listed:
                status = listed[key]
                if status is not None and status != WorkflowExecutionStatus.RUNNING:
                    closed.append((run, status))
                continue
            if _quotable(run.run_id) and run.started_at > young:
                continue  # not visible yet
            described = await self._describe(run)
            if described is not None:
                closed.append((run, described))
        return closed

    async def _describe(self, run: Run) -> WorkflowExecutionStatus | None:
        """The closed status of a run visibility did not list; None while it runs."""
        self.rpcs += 1
        try:
            handle = self._client.get_workflow_handle(run.run_id, run_id=run.execution_id)
            description = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return WorkflowExecutionStatus.TERMINATED
            logger.warning("cannot describe run %s: %s", run.run_id, err)
            return None
        status = description.status
        if status is None or status == WorkflowExecutionStatus.RUNNING:
            return None
        return status
