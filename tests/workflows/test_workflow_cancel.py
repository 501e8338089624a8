"""Cancellation reaches the run wherever the workflow is waiting (fake activities, real server)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.worker import Worker

from tests.conftest import eventually
from workflows import TrainingJobWorkflow, TrainingRunInput
from workflows.models import (
    NOTIFY_RUN_STATUS,
    PULL_IMAGE,
    RECORD_RUN_STATUS,
    RUN_TRAINING_CONTAINER,
    START_RUN,
    AttemptOutcome,
    ImageReady,
    PullImageInput,
    RunAttemptInput,
    RunPlan,
    RunStatusUpdate,
    StartRunInput,
)


class FakeActivities:
    """Stand-ins registered under the real names; notify and the attempt block until they are
    cancelled."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.statuses: list[str] = []
        self.containers_started = 0
        self.notifying = asyncio.Event()
        self.cancelled: list[str] = []

    @activity.defn(name=START_RUN)
    async def start_run(self, request: StartRunInput) -> RunPlan:
        return RunPlan(
            job_id=request.job_id,
            run_id=request.run_id,
            name="fake",
            image="fake:1",
            command=["true"],
            max_retries=0,
            checkpoint_path="/checkpoints/fake",
            trigger="sdk",
            retry_backoff_seconds=0,
            retry_backoff_max_seconds=0,
            heartbeat_timeout_seconds=10,
            infra_max_attempts=1,
            notify_timeout_seconds=60,
        )

    @activity.defn(name=RECORD_RUN_STATUS)
    async def record_run_status(self, update: RunStatusUpdate) -> None:
        self.statuses.append(update.status)

    @activity.defn(name=NOTIFY_RUN_STATUS)
    async def notify_run_status(self, update: RunStatusUpdate) -> None:
        if update.status != "running":
            return
        self.notifying.set()
        await self._until_cancelled("notify")  # a slow mail server

    @activity.defn(name=PULL_IMAGE)
    async def pull_image(self, request: PullImageInput) -> ImageReady:
        return ImageReady(task_queue=self.queue, worker="fake", pulled=False)

    @activity.defn(name=RUN_TRAINING_CONTAINER)
    async def run_training_container(self, request: RunAttemptInput) -> AttemptOutcome:
        self.containers_started += 1
        await self._until_cancelled("attempt")  # a long training
        return AttemptOutcome(exit_code=0, log_tail="", reattached=False)

    async def _until_cancelled(self, what: str) -> None:
        try:
            while True:  # heartbeats let the cancellation in
                activity.heartbeat()
                await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            self.cancelled.append(what)
            raise


async def test_cancel_during_the_running_notification_cancels_the_run(
    temporal_client: Client,
) -> None:
    queue = f"tests-cancel-{uuid.uuid4().hex[:6]}"
    fakes = FakeActivities(queue)
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[TrainingJobWorkflow],
        activities=[
            fakes.start_run,
            fakes.record_run_status,
            fakes.notify_run_status,
            fakes.pull_image,
            fakes.run_training_container,
        ],
    ):
        handle = await temporal_client.start_workflow(
            TrainingJobWorkflow.run,
            TrainingRunInput(job_id="train-0c0c0c0c"),
            id=f"train-0c0c0c0c-{datetime.now(UTC):%H%M%S%f}",
            task_queue=queue,
        )
        # The RUNNING notification goes out while the attempt starts, not before it.
        await asyncio.wait_for(fakes.notifying.wait(), 30)
        await eventually(lambda: _started(fakes), timeout=30)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()

        async def closed() -> bool:
            return (await handle.describe()).status == WorkflowExecutionStatus.CANCELED

        await eventually(closed, timeout=10)
    # Both were cancelled, and the run recorded its end once.
    assert sorted(fakes.cancelled) == ["attempt", "notify"]
    assert fakes.containers_started == 1
    assert fakes.statuses == ["cancelled"]


async def _started(fakes: FakeActivities) -> bool:
    return fakes.containers_started == 1
