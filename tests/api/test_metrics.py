"""``GET /metrics`` after real jobs, behind the API key, and the worker's Temporal SDK metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from api.app import create_app
from core.settings import Settings
from store.migrate import upgrade
from tests.conftest import (
    api_client,
    eventually,
    free_port,
    make_settings,
    unique_name,
    wait_for_status,
)
from worker import build_worker

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
async def metrics_settings(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """A database of its own (exact counts) and a Slack webhook nobody answers."""
    settings = make_settings(
        temporal_client,
        tmp_path_factory.mktemp("metrics"),
        task_queue="tests-metrics",
        slack_webhook_url=f"http://127.0.0.1:{free_port()}/hook",
        notify_on=["failed"],
        notify_timeout_seconds=2.0,
    )
    await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
    return settings


@pytest.fixture(scope="module")
async def metrics_api(
    metrics_settings: Settings, temporal_client: Client, busybox_image: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with build_worker(metrics_settings, temporal_client) as worker, worker:
        async with api_client(metrics_settings) as http:
            yield http


async def scrape(api: httpx.AsyncClient, **headers: str) -> Samples:
    response = await api.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


async def create(api: httpx.AsyncClient, image: str, command: list[str], **spec: Any) -> str:
    body = {"name": unique_name("metrics"), "image": image, "command": command, **spec}
    created = await api.post("/jobs", json=body)
    assert created.status_code == 201, created.text
    job_id: str = created.json()["job_id"]
    return job_id


async def test_metrics_count_jobs_runs_retries_and_requests(
    metrics_api: httpx.AsyncClient, busybox_image: str
) -> None:
    api = metrics_api
    before = await scrape(api)
    assert value(before, "orchestrator_runs_total", status="started") == 0

    done = await create(api, busybox_image, ["true"], max_retries=0)
    failed = await create(api, busybox_image, ["false"], max_retries=1)
    cancelled = await create(api, busybox_image, ["sleep", "60"], max_retries=0)
    assert (await wait_for_status(api, done, {"completed", "failed"}))["status"] == "completed"
    assert (await wait_for_status(api, failed, {"completed", "failed"}))["status"] == "failed"
    await wait_for_status(api, cancelled, {"running"})
    stopped = await api.post(f"/jobs/{cancelled}/cancel")
    assert stopped.status_code == 200 and stopped.json()["status"] == "cancelled", stopped.text

    async def notification_failed() -> Samples | None:
        samples = await scrape(api)
        return samples if value(samples, "orchestrator_notification_failures_total") else None

    # The failed run's notification goes to a webhook nobody answers; it is recorded after
    # the run's status, so wait for it.
    after: Samples = await eventually(notification_failed, timeout=30)

    assert {
        status: value(after, "orchestrator_jobs", status=status)
        for status in ("pending", "running", "retrying", "completed", "failed", "cancelled")
    } == {"pending": 0, "running": 0, "retrying": 0, "completed": 1, "failed": 1, "cancelled": 1}
    assert {
        status: value(after, "orchestrator_runs_total", status=status)
        for status in ("started", "completed", "failed", "cancelled")
    } == {"started": 3, "completed": 1, "failed": 1, "cancelled": 1}
    assert value(after, "orchestrator_run_retries_total") == 1
    assert value(after, "orchestrator_notification_failures_total") == 1

    # Requests are labelled by route template: one series for every job, no raw ids.
    assert (
        value(after, "orchestrator_http_requests_total", method="POST", route="/jobs", status="201")
        == 3
    )
    polled = {"method": "GET", "route": "/jobs/{job_id}", "status": "200"}
    assert value(after, "orchestrator_http_requests_total", **polled) >= 4
    assert value(after, "orchestrator_http_request_duration_seconds_count", **polled) >= 4
    cancel = {"method": "POST", "route": "/jobs/{job_id}/cancel", "status": "200"}
    assert value(after, "orchestrator_http_requests_total", **cancel) == 1
    routes = {dict(labels).get("route") for _, labels in after}
    assert not any(job_id in str(route) for route in routes for job_id in (done, failed))
    missing = await api.get("/no/such/path")
    assert missing.status_code == 404
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert value(await scrape(api), "orchestrator_http_requests_total", **unmatched) == 1


async def test_metrics_need_the_api_key_when_auth_is_on(metrics_settings: Settings) -> None:
    guarded = Settings.model_validate(
        {**metrics_settings.model_dump(), "enable_api_auth": True, "api_key": "metrics-secret"}
    )
    async with api_client(guarded) as api:
        refused = await api.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error_type"] == "AuthenticationError"
        samples = await scrape(api, **{"X-API-Key": "metrics-secret"})
        assert ("orchestrator_jobs", frozenset({("status", "pending")})) in samples
        # The docs stay open: they show the API, not its data.
        for page in ("/docs", "/redoc", "/openapi.json"):
            assert (await api.get(page)).status_code == 200, page


async def test_every_app_has_a_registry_of_its_own(metrics_settings: Settings) -> None:
    first, second = create_app(metrics_settings), create_app(metrics_settings)
    assert first.state.metrics.registry is not second.state.metrics.registry
    async with api_client(metrics_settings) as one, api_client(metrics_settings) as other:
        await one.get("/openapi.json")
        assert (await one.get("/metrics")).status_code == 200
        seen = parse((await one.get("/metrics")).text)
        unseen = parse((await other.get("/metrics")).text)
    schema = {"method": "GET", "route": "/openapi.json", "status": "200"}
    assert value(seen, "orchestrator_http_requests_total", **schema) == 1
    assert value(unseen, "orchestrator_http_requests_total", **schema) == 0


async def test_the_worker_serves_temporal_sdk_metrics(settings: Settings, tmp_path: Path) -> None:
    await asyncio.to_thread(upgrade, f"sqlite+aiosqlite:///{tmp_path / 'orchestrator.db'}")
    port = free_port()
    env = {
        **os.environ,
        "RUNTIME": "process",
        "DATA_DIR": str(tmp_path),
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "TASK_QUEUE": "tests-worker-metrics",
        "WORKER_METRICS_PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    worker = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=env)
    try:

        async def polled() -> str | None:
            async with httpx.AsyncClient() as http:
                try:
                    response = await http.get(f"http://127.0.0.1:{port}/metrics")
                except httpx.TransportError:
                    assert worker.poll() is None, "the worker exited"
                    return None
            # Long polls of its task queue are what a worker does all day.
            text = response.text
            return text if 'operation="PollWorkflowTaskQueue"' in text else None

        text: str = await eventually(polled, timeout=60, interval=0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.to_thread(worker.wait, 30)
    polls = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("temporal_long_request")
        and sample.labels.get("operation") == "PollWorkflowTaskQueue"
    ]
    assert polls, text
    assert {sample.labels["task_queue"] for sample in polls} == {"tests-worker-metrics"}
    assert all(sample.value >= 1 for sample in polls)
