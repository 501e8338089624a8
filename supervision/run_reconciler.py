"""The worker's reconciler: containers nobody follows, on this worker's own engine.

A run whose workflow was terminated from the Temporal UI or CLI leaves its container
running. Every RECONCILE_INTERVAL_SECONDS each worker finds the units of its engine whose run
is over and removes them, and the units of runs placed again elsewhere since they started
(``activities/fencing.py``). Finishing such runs in SQL is the cluster's one SQL-Temporal
reconciler's job (``jobs/control_plane.py``), which every worker also runs for its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.fencing import stop_stale_units
from activities.log_shipping import log_shipper
from activities.output_log import follow_output
from core.settings import Settings
from runtimes.base import (
    LABEL_ATTEMPT,
    LABEL_DEPLOYMENT,
    LABEL_JOB_ID,
    LABEL_RUN_ID,
    ContainerRuntime,
)
from store.log_files import attempt_log_path

logger = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    units_removed: int = 0
    claims_released: int = 0


class RunReconciler:
    """Removes the units of this engine whose run is over."""

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
        # Copies of runs placed again elsewhere (this host was taken for lost) stop first;
        # without the database that waits, and the clean-up below goes on.
        try:
            stale = await stop_stale_units(
                self._runtime,
                self._sessions,
                self._settings.deployment,
                self._settings.stop_grace_seconds,
            )
            report.units_removed += len(stale)
        except Exception as err:
            logger.warning("cannot look for stale units: %s", err)
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
                self._runtime.stream_output(name),
                path,
                self._settings.log_limits,
                source=name,
                ship=log_shipper(
                    self._settings,
                    self._sessions,
                    job_id=labels.get(LABEL_JOB_ID, "unknown"),
                    run_id=labels[LABEL_RUN_ID],
                    attempt=int(attempt) if attempt.isdigit() else 0,
                ),
            )
        await self._runtime.remove(name)
        logger.info("removed %s: its run is over", name)
