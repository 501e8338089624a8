"""Python users start runs with the Temporal SDK directly; the orchestrator keeps up."""

from __future__ import annotations

import secrets

import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from core.settings import Settings
from tests.conftest import eventually, unique_name, wait_for_status
from workflows import TrainingJobWorkflow, TrainingRunInput


async def test_sdk_run_of_an_existing_job_is_recorded(
    api: httpx.AsyncClient, temporal_client: Client, settings: Settings, busybox_image: str
) -> None:
    job = (
        await api.post(
            "/jobs",
            json={
                "name": unique_name("sdk"),
                "image": busybox_image,
                "command": ["true"],
                "schedule": "0 4 * * *",
            },
        )
    ).json()
    result = await temporal_client.execute_workflow(
        TrainingJobWorkflow.run,
        TrainingRunInput(job_id=job["job_id"]),
        id=f"{job['job_id']}-sdk-run",
        task_queue=settings.task_queue,
    )
    assert result.status == "completed"
    done = await wait_for_status(api, job["job_id"], {"completed"})
    assert done["latest_run_id"] == f"{job['job_id']}-sdk-run"
    runs = (await api.get(f"/jobs/{job['job_id']}/runs")).json()["runs"]
    assert [(r["run_id"], r["trigger"]) for r in runs] == [(f"{job['job_id']}-sdk-run", "sdk")]

    async def found() -> str:
        listing = temporal_client.list_workflows(f"JobId = '{job['job_id']}'")
        return "".join([wf.id async for wf in listing])

    assert f"{job['job_id']}-sdk-run" in await eventually(found, timeout=20)


async def test_sdk_run_with_a_spec_registers_the_job(
    api: httpx.AsyncClient, temporal_client: Client, settings: Settings, busybox_image: str
) -> None:
    job_id = f"train-{secrets.token_hex(4)}"
    name = unique_name("sdk-registered")
    result = await temporal_client.execute_workflow(
        TrainingJobWorkflow.run,
        TrainingRunInput(
            job_id=job_id,
            job={"name": name, "image": busybox_image, "command": ["sh", "-c", "echo hi"]},
        ),
        id=f"{job_id}-first",
        task_queue=settings.task_queue,
    )
    assert result.status == "completed"
    job = (await api.get(f"/jobs/{job_id}")).json()
    assert job["name"] == name and job["status"] == "completed"
    assert job["schedule"] is None and job["next_run_times"] == []
    description = await temporal_client.get_schedule_handle(job_id).describe()
    assert description.id == job_id
    # From now on it is a job like any other: the API can run it again.
    assert (await api.post(f"/jobs/{job_id}/retry")).status_code == 200
    assert (await wait_for_status(api, job_id, {"completed"}))["retry_count"] == 0


@pytest.mark.parametrize(
    ("job_spec", "error_type", "fragment"),
    [
        (None, "JobNotFound", "TrainingRunInput(job_id=..., job="),
        ({"name": "x", "command": []}, "InvalidJobSpec", "image"),
    ],
)
async def test_sdk_run_of_an_unknown_job_fails_at_once(
    temporal_client: Client,
    settings: Settings,
    worker: None,
    job_spec: dict[str, object] | None,
    error_type: str,
    fragment: str,
) -> None:
    job_id = f"train-{secrets.token_hex(4)}"
    with pytest.raises(WorkflowFailureError) as failure:
        await temporal_client.execute_workflow(
            TrainingJobWorkflow.run,
            TrainingRunInput(job_id=job_id, job=job_spec),
            id=f"{job_id}-nothing",
            task_queue=settings.task_queue,
        )
    cause = failure.value.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    assert isinstance(cause, ApplicationError)
    assert cause.type == error_type and cause.non_retryable
    assert fragment in cause.message
    history = await temporal_client.get_workflow_handle(f"{job_id}-nothing").fetch_history()
    started = [e for e in history.events if e.HasField("activity_task_started_event_attributes")]
    assert [e.activity_task_started_event_attributes.attempt for e in started] == [1]
