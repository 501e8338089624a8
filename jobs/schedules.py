"""Temporal Schedules of jobs: one schedule per job, id = job_id, action = one training run."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from jobs.errors import ServiceUnavailable
from jobs.models import Job
from workflows.models import WORKFLOW_NAME, TrainingRunInput

logger = logging.getLogger(__name__)

JOB_ID_ATTR = SearchAttributeKey.for_keyword("JobId")
JOB_NAME_ATTR = SearchAttributeKey.for_keyword("JobName")
TRIGGER_ATTR = SearchAttributeKey.for_keyword("Trigger")
SEARCH_ATTRIBUTES = (JOB_ID_ATTR, JOB_NAME_ATTR, TRIGGER_ATTR)


def schedule_spec(cron: str | None) -> ScheduleSpec:
    """A job without a cron has a spec that never fires: it runs only when triggered."""
    return ScheduleSpec(cron_expressions=[cron] if cron else [])


class TemporalConnection:
    """The API's Temporal client, connected on first use and kept.

    The API starts (and ``/health`` answers) while Temporal is still down; until a connection
    is made every call that needs Temporal fails with :class:`ServiceUnavailable`.
    """

    def __init__(self, address: str, namespace: str, timeout: timedelta) -> None:
        self.address = address
        self.namespace = namespace
        self._timeout = timeout
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await self._connect()
        return self._client

    async def _connect(self) -> Client:
        try:
            return await asyncio.wait_for(
                Client.connect(
                    self.address,
                    namespace=self.namespace,
                    data_converter=pydantic_data_converter,
                ),
                self._timeout.total_seconds(),
            )
        except (RuntimeError, OSError, TimeoutError) as err:
            # Client.connect reports a refused or failed connection as RuntimeError.
            raise ServiceUnavailable(f"Temporal at {self.address} is unreachable") from err


class JobSchedules:
    """Creates, updates, triggers and deletes the Temporal Schedules of jobs."""

    def __init__(self, temporal: TemporalConnection, task_queue: str, rpc_timeout: timedelta):
        self._temporal = temporal
        self._task_queue = task_queue
        self._timeout = rpc_timeout

    async def _handle(self, job_id: str) -> ScheduleHandle:
        return (await self._temporal.client()).get_schedule_handle(job_id)

    def _action(self, job: Job) -> ScheduleActionStartWorkflow:
        return ScheduleActionStartWorkflow(
            WORKFLOW_NAME,
            TrainingRunInput(job_id=job.job_id),
            # Temporal appends the firing time, so every run's workflow id starts with job_id.
            id=job.job_id,
            task_queue=self._task_queue,
            typed_search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(JOB_ID_ATTR, job.job_id),
                    SearchAttributePair(JOB_NAME_ATTR, job.name),
                ]
            ),
            memo={"job_name": job.name, "image": job.image},
        )

    async def create(self, job: Job, *, trigger_now: bool) -> None:
        schedule = Schedule(
            action=self._action(job),
            spec=schedule_spec(job.schedule),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(note=f"Training job {job.name}"),
        )
        client = await self._temporal.client()
        await client.create_schedule(
            job.job_id,
            schedule,
            trigger_immediately=trigger_now,
            rpc_timeout=self._timeout,
        )

    async def update(self, job: Job) -> None:
        """Make the schedule's spec and action match the job row."""
        action = self._action(job)
        spec = schedule_spec(job.schedule)

        def apply(update: ScheduleUpdateInput) -> ScheduleUpdate:
            schedule = update.description.schedule
            schedule.spec = spec
            schedule.action = action
            return ScheduleUpdate(schedule=schedule)

        await (await self._handle(job.job_id)).update(apply, rpc_timeout=self._timeout)

    async def exists(self, job_id: str) -> bool:
        try:
            await (await self._handle(job_id)).describe(rpc_timeout=self._timeout)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    async def delete(self, job_id: str) -> None:
        """Delete the schedule; one that is already gone is fine."""
        try:
            await (await self._handle(job_id)).delete(rpc_timeout=self._timeout)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise

    async def cancel_run(self, run_id: str) -> None:
        """Ask a run's workflow to cancel; it stops its container gracefully and records it."""
        client = await self._temporal.client()
        await client.get_workflow_handle(run_id).cancel(rpc_timeout=self._timeout)

    async def trigger(self, job_id: str) -> None:
        """Start a run now; never dropped by the overlap policy."""
        await (await self._handle(job_id)).trigger(
            overlap=ScheduleOverlapPolicy.ALLOW_ALL, rpc_timeout=self._timeout
        )


async def register_search_attributes(client: Client, namespace: str) -> None:
    """Register JobId, JobName and Trigger on the namespace if the server lacks them."""
    request = AddSearchAttributesRequest(
        namespace=namespace,
        search_attributes={
            key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES
        },
    )
    try:
        await client.operator_service.add_search_attributes(request, timeout=timedelta(seconds=10))
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise
