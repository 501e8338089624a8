"""One active run per job with two API replicas and two workers on one database and Temporal.

Each replica is an app of its own (``create_app`` on its own Settings) and each worker a
``build_worker`` of its own; they share the database (a SQLite file, or PostgreSQL through
TEST_POSTGRES_URL) and a task queue on the suite's Temporal dev server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from core.settings import Settings
from store import claims
from store.db import create_engine, create_sessionmaker
from store.migrate import upgrade
from store.models import Job, utcnow
from supervision.claims import release_stale_claims
from tests.conftest import (
    api_client,
    eventually,
    free_port,
    make_settings,
    unique_name,
    wait_for_status,
)
from tests.jobs.test_scheduling import all_finished, runs_of
from tests.store.test_store import postgres_url, reset_schema
from worker import build_worker
from workflows import TrainingJobWorkflow, TrainingRunInput
from workflows.models import TrainingRunResult

FAR_CRON = "0 5 1 1 *"  # never fires during a test


@dataclass
class Cluster:
    replicas: tuple[httpx.AsyncClient, httpx.AsyncClient]
    settings: Settings

    async def create(self, **fields: Any) -> dict[str, Any]:
        body = {"name": unique_name("claims"), **fields}
        response = await self.replicas[0].post("/jobs", json=body)
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job

    async def post_on_both(self, path: str, times: int, **kwargs: Any) -> list[httpx.Response]:
        """``times`` concurrent POSTs, alternating between the two replicas."""
        return await asyncio.gather(
            *(self.replicas[i % 2].post(path, **kwargs) for i in range(times))
        )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def cluster(
    request: pytest.FixtureRequest,
    temporal_client: Client,
    busybox_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Cluster]:
    data_dir: Path = tmp_path_factory.mktemp(f"claims-{request.param}")
    shared: dict[str, Any] = {"task_queue": f"tests-claims-{uuid.uuid4().hex[:6]}"}
    if request.param == "postgresql":
        shared["database_url"] = postgres_url()
        await asyncio.to_thread(reset_schema, shared["database_url"])
    one = make_settings(temporal_client, data_dir, worker_name="replica-a", **shared)
    two = make_settings(temporal_client, data_dir, worker_name="replica-b", **shared)
    if request.param == "sqlite":
        await asyncio.to_thread(upgrade, one.sqlalchemy_url)
    # A worker of its own needs a client of its own (one client polls a queue once).
    other_client = await Client.connect(
        one.temporal_address, data_converter=pydantic_data_converter
    )
    async with (
        build_worker(one, temporal_client) as first,
        build_worker(two, other_client) as second,
    ):
        async with first, second, api_client(one) as a, api_client(two) as b:
            yield Cluster((a, b), one)


def refused(response: httpx.Response) -> bool:
    return response.status_code == 409 and response.json()["error_type"] == "JobRunning"


async def test_ten_concurrent_retries_across_replicas_start_one_run(
    cluster: Cluster, busybox_image: str
) -> None:
    job = await cluster.create(
        image=busybox_image, command=["sh", "-c", "sleep 1; exit 3"], max_retries=0
    )
    job_id = job["job_id"]
    api = cluster.replicas[0]
    assert (await wait_for_status(api, job_id, {"failed"}))["status"] == "failed"

    answers = await cluster.post_on_both(f"/jobs/{job_id}/retry", 10)
    started = [r for r in answers if r.status_code == 200]
    assert len(started) == 1, [r.text for r in answers]
    assert started[0].json()["status"] == "pending" and started[0].json()["retry_count"] == 0
    assert sum(refused(r) for r in answers) == 9, [r.text for r in answers]

    runs = await all_finished(api, job_id, 2)
    assert len(runs) == 2
    assert sorted(r["trigger"] for r in runs) == ["manual", "retry"]
    # The run released its claim when it ended: the job can be retried again.
    assert (await api.post(f"/jobs/{job_id}/retry")).status_code == 200
    assert len(await all_finished(api, job_id, 3)) == 3


async def test_ten_concurrent_triggers_start_one_unless_overlap_is_allowed(
    cluster: Cluster, busybox_image: str
) -> None:
    job = await cluster.create(
        image=busybox_image, command=["sh", "-c", "sleep 2"], schedule=FAR_CRON
    )
    job_id = job["job_id"]
    answers = await cluster.post_on_both(f"/jobs/{job_id}/trigger", 10)
    assert [r.status_code for r in answers].count(200) == 1, [r.text for r in answers]
    assert sum(refused(r) for r in answers) == 9

    overlapping = await cluster.post_on_both(
        f"/jobs/{job_id}/trigger", 10, json={"allow_overlap": True}
    )
    assert [r.status_code for r in overlapping] == [200] * 10, [r.text for r in overlapping]
    runs = await all_finished(cluster.replicas[1], job_id, 11)
    assert len(runs) == 11 and len({r["run_id"] for r in runs}) == 11
    assert {r["trigger"] for r in runs} == {"manual"}
    assert {r["status"] for r in runs} == {"completed"}
    assert all(r["run_id"].startswith(f"{job_id}-manual-") for r in runs)


async def test_cron_firing_under_skip_during_a_manual_run_is_skipped_and_counted(
    cluster: Cluster, temporal_client: Client, busybox_image: str
) -> None:
    job = await cluster.create(
        image=busybox_image,
        command=["sh", "-c", "sleep 4"],
        schedule=FAR_CRON,
        overlap_policy="skip",
    )
    job_id = job["job_id"]
    api = cluster.replicas[0]
    assert (await api.post(f"/jobs/{job_id}/trigger")).status_code == 200
    manual = await wait_for_status(api, job_id, {"running"})
    # A firing of the schedule itself (what a cron firing does): Temporal does not see the
    # manual run, so only the claim can stop it.
    schedule = temporal_client.get_schedule_handle(job_id)
    await schedule.trigger()

    async def fired() -> str | None:
        actions = (await schedule.describe()).info.recent_actions
        return actions[0].action.workflow_id if actions else None  # type: ignore[attr-defined]

    firing_id: str = await eventually(fired, timeout=30)
    handle = temporal_client.get_workflow_handle(firing_id, result_type=TrainingRunResult)
    result = await handle.result()
    assert result.skipped is not None and manual["latest_run_id"] in result.skipped
    assert (await temporal_client.get_workflow_handle(firing_id).describe()).status == (
        WorkflowExecutionStatus.COMPLETED
    )

    view = (await api.get(f"/jobs/{job_id}/schedule")).json()
    assert view["skipped_active_run"] == 1
    skipped = [e for e in view["events"] if e["event"] == "skipped"]
    assert len(skipped) == 1 and "overlap policy skip" in skipped[0]["note"]
    runs = await all_finished(api, job_id, 1)
    assert [r["run_id"] for r in runs] == [manual["latest_run_id"]]


async def test_sdk_start_of_a_running_job_fails_with_job_running(
    cluster: Cluster, temporal_client: Client, busybox_image: str
) -> None:
    job = await cluster.create(
        image=busybox_image, command=["sh", "-c", "sleep 4"], schedule=FAR_CRON
    )
    job_id = job["job_id"]
    api = cluster.replicas[1]
    assert (await api.post(f"/jobs/{job_id}/trigger")).status_code == 200
    await wait_for_status(api, job_id, {"running"})

    with pytest.raises(WorkflowFailureError) as failure:
        await temporal_client.execute_workflow(
            TrainingJobWorkflow.run,
            TrainingRunInput(job_id=job_id),
            id=f"{job_id}-sdk-late",
            task_queue=cluster.settings.task_queue,
        )
    cause = failure.value.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    assert isinstance(cause, ApplicationError)
    assert cause.type == "JobRunning" and cause.non_retryable
    history = await temporal_client.get_workflow_handle(f"{job_id}-sdk-late").fetch_history()
    started = [e for e in history.events if e.HasField("activity_task_started_event_attributes")]
    assert [e.activity_task_started_event_attributes.attempt for e in started] == [1]
    runs = await all_finished(api, job_id, 1)
    assert len(runs) == 1 and runs[0]["trigger"] == "manual"


async def test_a_claim_with_no_workflow_is_released_by_the_reconciler(
    cluster: Cluster, temporal_client: Client, busybox_image: str
) -> None:
    api = cluster.replicas[0]
    orphan = await cluster.create(image=busybox_image, command=["true"], schedule=FAR_CRON)
    busy = await cluster.create(
        image=busybox_image, command=["sh", "-c", "sleep 6"], schedule=FAR_CRON
    )
    assert (await api.post(f"/jobs/{busy['job_id']}/trigger")).status_code == 200
    await wait_for_status(api, busy["job_id"], {"running"})
    # An API that died between its claim and start_workflow, long ago.
    engine = create_engine(cluster.settings.sqlalchemy_url)
    sessions = create_sessionmaker(engine)
    try:
        lost_run = f"{orphan['job_id']}-manual-lost"
        async with sessions() as session:
            assert await claims.claim(session, orphan["job_id"], lost_run)
            old = utcnow() - timedelta(hours=1)
            await session.execute(
                update(Job).values(claimed_at=old).where(Job.active_run_id.is_not(None))
            )
            await session.commit()
        for method, suffix in (
            ("post", "/trigger"),
            ("post", "/retry"),
            ("put", ""),
            ("delete", ""),
        ):
            kwargs: dict[str, Any] = {"json": {"max_retries": 1}} if method == "put" else {}
            answer = await api.request(
                method.upper(), f"/jobs/{orphan['job_id']}{suffix}", **kwargs
            )
            assert refused(answer), (method, suffix, answer.text)

        # What the cluster's reconciler (the lease holder) does at each tick.
        assert await release_stale_claims(sessions, temporal_client, timedelta(seconds=60)) == 1
        async with sessions() as session:
            assert (await session.get(Job, orphan["job_id"])).active_run_id is None  # type: ignore[union-attr]
            # The running run's claim is as old, but a workflow holds it.
            held = await session.get(Job, busy["job_id"])
            assert held is not None and held.active_run_id is not None
    finally:
        await engine.dispose()
    assert (await api.post(f"/jobs/{orphan['job_id']}/trigger")).status_code == 200
    assert len(await all_finished(api, orphan["job_id"], 1)) == 1
    assert len(await runs_of(api, busy["job_id"])) == 1


async def test_a_start_temporal_refuses_releases_the_claim_and_restores_the_job(
    cluster: Cluster, busybox_image: str
) -> None:
    job = await cluster.create(image=busybox_image, command=["sh", "-c", "exit 3"], max_retries=0)
    job_id = job["job_id"]
    api = cluster.replicas[0]
    failed = await wait_for_status(api, job_id, {"failed"})
    # A third replica whose Temporal is unreachable: its start fails after its claim.
    cut_off = cluster.settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    async with api_client(cut_off) as lost:
        for path in ("retry", "trigger"):
            answer = await lost.post(f"/jobs/{job_id}/{path}")
            assert answer.status_code == 503, answer.text
            assert answer.json()["error_type"] == "ServiceUnavailable"
    after = (await api.get(f"/jobs/{job_id}")).json()
    assert (after["status"], after["error_message"]) == ("failed", failed["error_message"])
    assert (await api.post(f"/jobs/{job_id}/retry")).status_code == 200
    runs = await all_finished(api, job_id, 2)
    assert sorted(r["trigger"] for r in runs) == ["manual", "retry"]
