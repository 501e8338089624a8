"""Worker interceptors: every activity's log records name its job and run."""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from core.logging import job_id_of_run, log_context


class LogContextInterceptor(Interceptor):
    """Binds the job and run ids of each activity's input for the activity's log records."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityLogContext(next)


class _ActivityLogContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        # Every activity of ours takes one model that names its job (and usually its run).
        request = input.args[0] if input.args else None
        run_id = getattr(request, "run_id", None) or activity.info().workflow_id
        job_id = getattr(request, "job_id", None) or (run_id and job_id_of_run(run_id))
        with log_context(job_id=job_id, run_id=run_id):
            return await self.next.execute_activity(input)
