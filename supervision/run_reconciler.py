"""The worker's reconciler: runs closed behind our back, and containers nobody follows.

A run whose workflow was terminated from the Temporal UI or CLI never records its end, and
its container keeps running. Every RECONCILE_INTERVAL_SECONDS the worker finds both and
finishes them, so a job is never stuck ``running``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.output_log import follow_output
from core.settings import Settings
from runtimes.base import (
    LABEL_ATTEMPT,
    LABEL_DEPLOYMENT,
    LABEL_JOB_ID,
    LABEL_RUN_ID,
    ContainerRuntime,
)
from store import runs as run_store
from store.log_files import attempt_log_path
from store.models import utcnow
from supervision.claims import release_stale_claims
from workflows.models import JobStatus

logger = logging.getLogger(__name__)

_OUTCOME = {
    WorkflowExecutionStatus.COMPLETED: (JobStatus.COMPLETED, None),
    WorkflowExecutionStatus.CANCELED: (JobStatus.CANCELLED, "Run was cancelled in Temporal"),
    WorkflowExecutionStatus.TERMINATED: (
        JobStatus.CANCELLED,
        "Run was terminated in Temporal (outside the orchestrator)",
    ),
    WorkflowExecutionStatus.FAILED: (JobStatus.FAILED, "Run's workflow failed in Temporal"),
    WorkflowExecutionStatus.TIMED_OUT: (JobStatus.FAILED, "Run's workflow timed out in Temporal"),
}


@dataclass
class ReconcileReport:
    runs_finished: int = 0
    units_removed: int = 0
    claims_released: int = 0


class RunReconciler:
    """Finishes SQL runs whose workflow has closed and removes their leftover units."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: Client,
        runtime: ContainerRuntime,
        settings: Settings,
    ) -> None:
        self._sessions = sessions
        self._client = client
        self._runtime = runtime
        self._settings = settings

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.reconcile_interval_seconds)
            try:
                await self.reconcile_once()
            except Exception as err:  # Temporal, SQL or the runtime is down: next tick
                logger.warning("run reconciliation failed: %s", err)

    async def reconcile_once(self) -> ReconcileReport:
        report = ReconcileReport()
        report.claims_released = await release_stale_claims(
            self._sessions, self._client, timedelta(seconds=self._settings.claim_grace_seconds)
        )
        async with self._sessions() as session:
            active = await run_store.active_runs(session)
        for run in active:
            try:
                closed = await self._closed_status(run.run_id, run.execution_id)
            except RPCError as err:
                logger.warning("cannot describe run %s: %s", run.run_id, err)
                continue
            if closed is None:
                continue
            status, message = _OUTCOME.get(closed, (JobStatus.FAILED, f"Run ended as {closed}"))
            async with self._sessions() as session:
                await run_store.record_run_status(
                    session,
                    job_id=run.job_id,
                    run_id=run.run_id,
                    status=status,
                    attempt=run.attempt,
                    retry_count=run.retry_count,
                    at=utcnow(),
                    error_message=message,
                    exit_code=None,
                )
            logger.info("finished run %s of %s as %s", run.run_id, run.job_id, status)
            report.runs_finished += 1

        for name, labels, _running in await self._runtime.list_units():
            run_id = labels.get(LABEL_RUN_ID)
            if not run_id or labels.get(LABEL_DEPLOYMENT) != self._settings.deployment:
                continue  # another orchestrator's unit, on a shared engine
            try:
                if await self._closed_status(run_id, None) is None:
                    continue
                await self._remove_unit(name, labels)
            except Exception as err:  # one unit's trouble must not stop the others
                logger.warning("cannot clean up unit %s: %s", name, err)
                continue
            report.units_removed += 1
        return report

    async def _closed_status(
        self, workflow_id: str, execution_id: str | None
    ) -> WorkflowExecutionStatus | None:
        """The workflow's final status, None while it runs (or if Temporal cannot say)."""
        try:
            handle = self._client.get_workflow_handle(workflow_id, run_id=execution_id)
            description = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return WorkflowExecutionStatus.TERMINATED
            raise
        status = description.status
        if status is None or status == WorkflowExecutionStatus.RUNNING:
            return None
        return status

    async def _remove_unit(self, name: str, labels: dict[str, str]) -> None:
        """Stop a unit whose run is over, keeping its output with the run's logs."""
        await self._runtime.stop(name, self._settings.stop_grace_seconds)
        attempt = labels.get(LABEL_ATTEMPT, "0")
        path = attempt_log_path(
            self._settings.log_dir,
            labels.get(LABEL_JOB_ID, "unknown"),
            labels[LABEL_RUN_ID],
            int(attempt) if attempt.isdigit() else 0,
        )
        # The file the attempt's activity wrote is completed (within its bound), not rewritten.
        with contextlib.suppress(LookupError):
            await follow_output(
                self._runtime.stream_output(name), path, self._settings.log_limits, source=name
            )
        await self._runtime.remove(name)
        logger.info("removed %s: its run is over", name)
