"""Temporal Schedules of jobs: one schedule per job, id = job_id, action = one training run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleBackfill,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from core.errors import ServiceUnavailable
from jobs import schedule_listing
from jobs.matching_times import schedule_matching_times
from jobs.schedule_listing import PAUSED_QUERY, ScheduleStates
from jobs.schedule_parts import SchedulePart
from store.models import Job
from workflows.models import (
    JOB_ID_ATTRIBUTE,
    JOB_NAME_ATTRIBUTE,
    TRIGGER_ATTRIBUTE,
    WORKFLOW_NAME,
    TrainingRunInput,
    Trigger,
)

logger = logging.getLogger(__name__)

JOB_ID_ATTR = SearchAttributeKey.for_keyword(JOB_ID_ATTRIBUTE)
JOB_NAME_ATTR = SearchAttributeKey.for_keyword(JOB_NAME_ATTRIBUTE)
TRIGGER_ATTR = SearchAttributeKey.for_keyword(TRIGGER_ATTRIBUTE)
SEARCH_ATTRIBUTES = (JOB_ID_ATTR, JOB_NAME_ATTR, TRIGGER_ATTR)


OVERLAP_POLICIES = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "buffer_one": ScheduleOverlapPolicy.BUFFER_ONE,
    "buffer_all": ScheduleOverlapPolicy.BUFFER_ALL,
    "cancel_other": ScheduleOverlapPolicy.CANCEL_OTHER,
    "terminate_other": ScheduleOverlapPolicy.TERMINATE_OTHER,
    "allow_all": ScheduleOverlapPolicy.ALLOW_ALL,
}
# Temporal's own default, used when a job does not set catchup_window_seconds.
DEFAULT_CATCHUP_WINDOW = timedelta(days=365)


def schedule_spec(job: Job) -> ScheduleSpec:
    """A job without a cron has a spec that never fires: it runs only when triggered."""
    if not job.schedule:
        return ScheduleSpec()
    return ScheduleSpec(cron_expressions=[job.schedule], time_zone_name=job.timezone or "UTC")


def schedule_policy(job: Job) -> SchedulePolicy:
    window = job.catchup_window_seconds
    return SchedulePolicy(
        overlap=OVERLAP_POLICIES[job.overlap_policy or "skip"],
        catchup_window=timedelta(seconds=window) if window else DEFAULT_CATCHUP_WINDOW,
    )


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

    @classmethod
    def of(cls, client: Client) -> TemporalConnection:
        """A connection around a client that is already connected (the worker's)."""
        connection = cls(
            client.service_client.config.target_host, client.namespace, timedelta(seconds=10)
        )
        connection._client = client
        return connection

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
            typed_search_attributes=_run_attributes(job, None),
            memo=_run_memo(job),
        )

    async def create(self, job: Job, *, trigger_now: bool = False) -> None:
        """The job's schedule; ``trigger_now`` fires it once at creation (the API no longer
        does: it starts a one-off job's run itself, see :meth:`start_run`)."""
        schedule = Schedule(
            action=self._action(job),
            spec=schedule_spec(job),
            policy=schedule_policy(job),
            state=ScheduleState(note=f"Training job {job.name}", paused=bool(job.paused)),
        )
        client = await self._temporal.client()
        await client.create_schedule(
            job.job_id,
            schedule,
            trigger_immediately=trigger_now,
            rpc_timeout=self._timeout,
        )

    async def update(self, job: Job, parts: SchedulePart) -> None:
        """Make the schedule's ``parts`` match the job row; leave the rest as Temporal has it.

        The parts are applied onto the description Temporal hands the update callback, so
        what the change did not touch (a pause made in the UI or CLI, a note, a policy field
        the API does not set) goes back as it was. Temporal has no partial update: a change
        made outside the API between the describe and the update (one round trip) is lost.
        """
        if not parts:
            return
        action, spec, policy = self._action(job), schedule_spec(job), schedule_policy(job)

        def apply(update: ScheduleUpdateInput) -> ScheduleUpdate:
            schedule = update.description.schedule
            if SchedulePart.SPEC in parts:
                schedule.spec = spec
            if SchedulePart.ACTION in parts:
                schedule.action = action
            if SchedulePart.POLICY in parts:
                schedule.policy.overlap = policy.overlap
                schedule.policy.catchup_window = policy.catchup_window
            if SchedulePart.PAUSED in parts:
                schedule.state.paused = bool(job.paused)
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

    async def describe(self, job_id: str) -> ScheduleDescription:
        return await (await self._handle(job_id)).describe(rpc_timeout=self._timeout)

    async def pause(self, job_id: str, note: str) -> None:
        await (await self._handle(job_id)).pause(note=note, rpc_timeout=self._timeout)

    async def unpause(self, job_id: str, note: str) -> None:
        await (await self._handle(job_id)).unpause(note=note, rpc_timeout=self._timeout)

    async def backfill(self, job_id: str, start: datetime, end: datetime, overlap: str) -> None:
        """Start the runs of firings ``start <= t < end``, as ``matching_times`` lists them."""
        # Temporal's backfill also fires at exactly end_at; the range we promise excludes it.
        end_at = end - timedelta(microseconds=1)
        await (await self._handle(job_id)).backfill(
            ScheduleBackfill(start_at=start, end_at=end_at, overlap=OVERLAP_POLICIES[overlap]),
            rpc_timeout=self._timeout,
        )

    async def matching_times(
        self, job_id: str, start: datetime, end: datetime, limit: int
    ) -> list[datetime]:
        """The schedule's firings ``start <= t < end`` as Temporal computes them (≤ limit+1)."""
        client = await self._temporal.client()
        return await schedule_matching_times(client, job_id, start, end, limit, self._timeout)

    async def list_states(self) -> ScheduleStates:
        """``job_id -> (paused, note, next firing)`` of every schedule, in one listing."""
        return await schedule_listing.list_all(await self._temporal.client(), self._timeout)

    async def paused_states(self) -> ScheduleStates:
        """The states of the paused schedules only (a filtered listing)."""
        client = await self._temporal.client()
        return await schedule_listing.list_all(client, self._timeout, PAUSED_QUERY)

    async def states_of(self, job_ids: Sequence[str]) -> ScheduleStates:
        """The states of these schedules, by ``ScheduleId IN (...)`` queries."""
        client = await self._temporal.client()
        return await schedule_listing.list_ids(client, self._timeout, job_ids)

    async def states_page(self, token: bytes) -> tuple[ScheduleStates, bytes]:
        """One page of the whole listing from ``token``, and the next page's token."""
        client = await self._temporal.client()
        return await schedule_listing.list_page(client, self._timeout, token)

    async def start_run(
        self,
        job: Job,
        run_id: str,
        trigger: Trigger,
        *,
        allow_overlap: bool,
        actor: str | None = None,
    ) -> None:
        """Start one run of ``job`` now, as workflow ``run_id``, with what schedule runs carry.

        Manual runs and retries start here rather than through the schedule: the schedule
        would name the run ``<job_id>-<time to the second>`` and drop a second one within
        the same second.
        """
        client = await self._temporal.client()
        await client.start_workflow(
            WORKFLOW_NAME,
            TrainingRunInput(
                job_id=job.job_id, trigger=trigger, allow_overlap=allow_overlap, actor=actor
            ),
            id=run_id,
            task_queue=self._task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=_run_attributes(job, trigger),
            memo=_run_memo(job),
            rpc_timeout=self._timeout,
        )

    async def terminate_run(self, run_id: str, reason: str) -> None:
        """End a run that must not go on (its job was undone); one already gone is fine."""
        client = await self._temporal.client()
        try:
            await client.get_workflow_handle(run_id).terminate(
                reason=reason, rpc_timeout=self._timeout
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise


def _run_attributes(job: Job, trigger: Trigger | None) -> TypedSearchAttributes:
    pairs = [
        SearchAttributePair(JOB_ID_ATTR, job.job_id),
        SearchAttributePair(JOB_NAME_ATTR, job.name),
    ]
    if trigger is not None:
        pairs.append(SearchAttributePair(TRIGGER_ATTR, trigger.value))
    return TypedSearchAttributes(pairs)


def _run_memo(job: Job) -> dict[str, Any]:
    return {"job_name": job.name, "image": job.image}


async def register_search_attributes(client: Client, namespace: str) -> None:
    """Register JobId, JobName and Trigger on the namespace if the server lacks them."""
    timeout = timedelta(seconds=10)
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace), timeout=timeout
    )
    missing = [key.name for key in SEARCH_ATTRIBUTES if key.name not in listed.custom_attributes]
    if not missing:
        return
    request = AddSearchAttributesRequest(
        namespace=namespace,
        search_attributes=dict.fromkeys(missing, IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD),
    )
    try:
        await client.operator_service.add_search_attributes(request, timeout=timeout)
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise
