"""Images pulled in their own activity, from a real registry on loopback (docker-registry).

The pull heartbeats with its layers' progress and answers with the task queue of the worker
that pulled; the attempt runs there. A tag the registry does not have fails the run as
``ImageUnavailable`` after the bounded number of pull attempts, consuming no training retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from docker.errors import ImageNotFound
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.images import ImageActivities
from core.settings import Settings
from notifications.registry import configured_channels
from runtimes.docker import DockerRuntime
from tests.conftest import api_client, scheduled_activities, unique_name, wait_for_status
from tests.registry import LocalRegistry, local_registry
from worker import build_worker
from workflows.models import (
    IMAGE_UNAVAILABLE,
    INVALID_SPEC,
    NOTIFY_RUN_STATUS,
    PULL_IMAGE,
    RECORD_RUN_STATUS,
    RUN_TRAINING_CONTAINER,
    ImageReady,
    PullImageInput,
)


@pytest.fixture(scope="module")
def registry() -> Iterator[LocalRegistry]:
    with local_registry() as running:
        yield running


def is_local(reference: str) -> bool:
    client = docker.from_env()
    try:
        client.images.get(reference)
        return True
    except ImageNotFound:
        return False
    finally:
        client.close()


def pull_request(image: str) -> PullImageInput:
    return PullImageInput(job_id="train-pull", run_id="train-pull-run", attempt=1, image=image)


async def test_a_pull_heartbeats_its_layers_and_names_the_workers_queue(
    settings: Settings, registry: LocalRegistry
) -> None:
    image = await asyncio.to_thread(registry.push_busybox, 4 * 1024 * 1024)
    assert not await asyncio.to_thread(is_local, image)
    local = settings.model_copy(update={"image_pull_policy": "if-not-present"})
    images = ImageActivities(DockerRuntime(pull_policy="if-not-present"), local)
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details[0])

    ready: ImageReady = await env.run(images.pull_image, pull_request(image))

    assert ready.pulled and ready.task_queue == f"{local.task_queue}-{local.worker_name}"
    assert await asyncio.to_thread(is_local, image)
    pulls = [beat["pull"] for beat in beats if beat["pull"]]
    assert pulls, beats
    last = pulls[-1]
    assert last["layers_total"] >= 2 and last["layers_done"] == last["layers_total"], last
    # The random payload alone is 4 MiB, downloaded from the registry.
    assert last["downloaded_bytes"] >= 4 * 1024 * 1024, last
    assert all(beat["image"] == image for beat in beats)

    # Present now: if-not-present does not pull again.
    again: ImageReady = await ActivityEnvironment().run(images.pull_image, pull_request(image))
    assert not again.pulled


@pytest.mark.parametrize(
    ("repository", "error_type", "retryable"),
    [("orch/busybox", IMAGE_UNAVAILABLE, True), ("Orch/BusyBox", INVALID_SPEC, False)],
    ids=["missing-tag", "invalid-reference"],
)
async def test_pull_failures_are_typed(
    settings: Settings,
    registry: LocalRegistry,
    repository: str,
    error_type: str,
    retryable: bool,
) -> None:
    images = ImageActivities(DockerRuntime(pull_policy="always"), settings)
    image = f"{registry.address}/{repository}:missing"
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(images.pull_image, pull_request(image))
    assert raised.value.type == error_type
    assert raised.value.non_retryable is not retryable


async def test_a_job_pulls_its_image_then_trains_on_the_same_worker(
    settings: Settings,
    temporal_client: Client,
    registry: LocalRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    image = await asyncio.to_thread(registry.push_busybox)
    local = settings.model_copy(
        update={"task_queue": unique_name("tests-pull"), "image_pull_policy": "if-not-present"}
    )
    caplog.set_level(logging.INFO, logger="temporalio.activity")
    async with build_worker(local, temporal_client) as worker, worker, api_client(local) as api:
        created = await api.post(
            "/jobs",
            json={
                "name": unique_name("pull"),
                "image": image,
                "command": ["sh", "-c", "echo trained from the registry image"],
                "max_retries": 0,
            },
        )
        assert created.status_code == 201, created.text
        done = await wait_for_status(api, created.json()["job_id"], {"completed", "failed"})
        logs = (await api.get(f"/jobs/{done['job_id']}/logs")).text
    assert done["status"] == "completed", done
    assert "trained from the registry image" in logs
    pulled = [r.getMessage() for r in caplog.records if f"pulled image {image}" in r.getMessage()]
    assert len(pulled) == 1 and "3/3 layers" in pulled[0], pulled

    history = await temporal_client.get_workflow_handle(done["latest_run_id"]).fetch_history()
    queues = {
        e.activity_task_scheduled_event_attributes.activity_type.name: (
            e.activity_task_scheduled_event_attributes.task_queue.name
        )
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    assert queues[PULL_IMAGE] == local.task_queue
    assert queues[RUN_TRAINING_CONTAINER] == local.worker_task_queue


async def test_a_job_whose_image_is_here_starts_without_a_pull_or_a_silent_notice(
    settings: Settings, temporal_client: Client, busybox_image: str
) -> None:
    """start_run found the image on its worker's engine: the first attempt goes to that
    worker's own queue at once (no pull_image round trip), and a retry pulls where it lands."""
    local = settings.model_copy(
        update={
            "task_queue": unique_name("tests-ready"),
            "image_pull_policy": "if-not-present",
            "retry_backoff_seconds": 0.1,
        }
    )
    async with build_worker(local, temporal_client) as worker, worker, api_client(local) as api:
        created = await api.post(
            "/jobs",
            json={
                "name": unique_name("ready"),
                "image": busybox_image,
                "command": ["sh", "-c", "echo attempt; exit 3"],
                "max_retries": 1,
            },
        )
        assert created.status_code == 201, created.text
        done = await wait_for_status(api, created.json()["job_id"], {"completed", "failed"})
    assert done["status"] == "failed" and done["retry_count"] == 1, done

    history = await temporal_client.get_workflow_handle(done["latest_run_id"]).fetch_history()
    placed = [
        (name, queue)
        for name, queue in scheduled_activities(history)
        if name in (PULL_IMAGE, RUN_TRAINING_CONTAINER)
    ]
    assert placed == [
        (RUN_TRAINING_CONTAINER, local.worker_task_queue),
        (PULL_IMAGE, local.task_queue),
        (RUN_TRAINING_CONTAINER, local.worker_task_queue),
    ]
    # No Slack, mail or webhook is configured here: nothing is asked to notify anyone (with a
    # channel, tests/activities/test_webhooks.py sees the activity).
    assert configured_channels(local) == []
    activities = {name for name, _queue in scheduled_activities(history)}
    assert NOTIFY_RUN_STATUS not in activities and RECORD_RUN_STATUS in activities


async def test_a_tag_the_registry_lacks_fails_the_run_after_bounded_pulls(
    settings: Settings, temporal_client: Client, registry: LocalRegistry
) -> None:
    image = registry.reference("no-such-tag")
    local = settings.model_copy(
        update={"task_queue": unique_name("tests-pull"), "image_pull_policy": "if-not-present"}
    )
    async with build_worker(local, temporal_client) as worker, worker, api_client(local) as api:
        created = await api.post(
            "/jobs",
            json={"name": unique_name("pull"), "image": image, "command": ["true"]},
        )
        assert created.status_code == 201, created.text
        done = await wait_for_status(api, created.json()["job_id"], {"completed", "failed"})
    assert done["status"] == "failed", done
    assert done["retry_count"] == 0, "an image that cannot be had is not a training failure"
    assert image in done["error_message"] and "gave up after" in done["error_message"]

    handle = temporal_client.get_workflow_handle(done["latest_run_id"])
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert isinstance(failed.value.cause, ApplicationError)
    assert failed.value.cause.type == IMAGE_UNAVAILABLE
    history = await handle.fetch_history()
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    pull_attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and scheduled[e.activity_task_started_event_attributes.scheduled_event_id] == PULL_IMAGE
    ]
    assert pull_attempts == [local.infra_max_attempts]
    assert RUN_TRAINING_CONTAINER not in scheduled.values(), "no attempt without its image"
