"""The workflow seen from Temporal: cancellation, and replay of every history the suite made."""

from __future__ import annotations

import docker
import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from core.settings import Settings
from runtimes.base import LABEL_JOB_ID
from tests.conftest import eventually, unique_name, wait_for_status
from workflows import TrainingJobWorkflow
from workflows.sandbox import workflow_runner


async def test_cancelling_a_run_stops_its_container(
    api: httpx.AsyncClient, temporal_client: Client, busybox_image: str
) -> None:
    created = await api.post(
        "/jobs",
        json={
            "name": unique_name("cancel"),
            "image": busybox_image,
            "command": ["sh", "-c", "trap 'echo stopping; exit 143' TERM; sleep 60 & wait"],
        },
    )
    job_id = created.json()["job_id"]
    running = await wait_for_status(api, job_id, {"running"})
    handle = temporal_client.get_workflow_handle(running["latest_run_id"])
    await handle.cancel()

    done = await wait_for_status(api, job_id, {"cancelled", "failed", "completed"}, timeout=30)
    assert done["status"] == "cancelled"
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    client = docker.from_env()
    try:
        left = client.containers.list(all=True, filters={"label": f"{LABEL_JOB_ID}={job_id}"})
    finally:
        client.close()
    assert left == []


@pytest.mark.replay
async def test_every_history_replays_deterministically(
    api: httpx.AsyncClient, temporal_client: Client, settings: Settings
) -> None:
    """Runs last (see conftest): a non-deterministic change to the workflow fails here."""

    query = (
        f"WorkflowType = 'TrainingJobWorkflow' AND TaskQueue = '{settings.task_queue}' "
        "AND ExecutionStatus != 'Running'"
    )

    async def closed() -> list[str]:
        return [wf.id async for wf in temporal_client.list_workflows(query)]

    # Visibility is eventually consistent; the suite's earlier tests closed several runs.
    ids = await eventually(closed, timeout=20)
    replayer = Replayer(
        workflows=[TrainingJobWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    replayed: list[str] = []
    failures: dict[str, str] = {}
    async for history in temporal_client.list_workflows(query).map_histories():
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        replayed.append(history.workflow_id)
        if result.replay_failure is not None:
            failures[history.workflow_id] = str(result.replay_failure)
    assert failures == {}
    assert set(ids) <= set(replayed)
