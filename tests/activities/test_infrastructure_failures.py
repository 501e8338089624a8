"""Failures that are not the trainer's: they fail the run clearly and consume no retry."""

from __future__ import annotations

import docker
import httpx
from temporalio.client import Client

from core.settings import Settings
from runtimes.docker import DockerRuntime
from tests.conftest import api_client, unique_name, wait_for_status
from worker import build_worker


async def test_without_a_docker_engine_the_run_says_what_to_do(
    settings: Settings, temporal_client: Client
) -> None:
    local = settings.model_copy(update={"task_queue": "tests-no-docker"})
    no_engine = DockerRuntime(
        client_factory=lambda: docker.DockerClient(base_url="unix:///nonexistent/docker.sock")
    )
    async with build_worker(local, temporal_client, runtime=no_engine) as worker, worker:
        async with api_client(local) as api:
            created = await api.post(
                "/jobs",
                json={"name": unique_name(), "image": "trainer:1", "command": ["train"]},
            )
            assert created.status_code == 201
            done = await wait_for_status(api, created.json()["job_id"], {"failed", "completed"})
    assert done["status"] == "failed"
    assert done["retry_count"] == 0
    assert "RUNTIME=process" in done["error_message"]
    assert "Docker" in done["error_message"]


async def test_missing_image_fails_after_bounded_pull_attempts(
    api: httpx.AsyncClient, settings: Settings, temporal_client: Client
) -> None:
    created = await api.post(
        "/jobs",
        json={
            "name": unique_name(),
            "image": "no-such-image-anywhere:1",
            "command": ["train"],
            "max_retries": 3,
        },
    )
    done = await wait_for_status(api, created.json()["job_id"], {"failed", "completed"})
    assert done["status"] == "failed"
    assert done["retry_count"] == 0, "an image that cannot be had is not a training failure"
    assert "no-such-image-anywhere:1" in done["error_message"]
    assert "gave up after" in done["error_message"]
    # Temporal records the attempt number of the last try of the activity.
    history = await temporal_client.get_workflow_handle(done["latest_run_id"]).fetch_history()
    attempts = [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.HasField("activity_task_started_event_attributes")
    ]
    assert max(attempts) == settings.infra_max_attempts


async def test_command_that_cannot_run_fails_at_once(
    api: httpx.AsyncClient, busybox_image: str
) -> None:
    created = await api.post(
        "/jobs",
        json={
            "name": unique_name(),
            "image": busybox_image,
            "command": ["/no/such/trainer"],
            "max_retries": 3,
        },
    )
    done = await wait_for_status(api, created.json()["job_id"], {"failed", "completed"})
    assert done["status"] == "failed"
    assert done["retry_count"] == 0
    assert "/no/such/trainer" in done["error_message"]
