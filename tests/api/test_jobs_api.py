"""Every endpoint of the API guide against the real stack: dev server, SQLite, Docker, worker."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from temporalio.client import Client, ScheduleBackfill, ScheduleOverlapPolicy

from jobs.temporal import TRIGGER_ATTR
from tests.conftest import api_client, make_settings, unique_name, wait_for_status

GUIDE_JOB = {
    "image": "gcr.io/my-project/trainer:latest",
    "command": ["python", "train.py", "--model", "resnet50", "--epochs", "100"],
    "schedule": "0 2 * * *",
    "max_retries": 3,
    "checkpoint_path": "/checkpoints/resnet50",
}


def is_utc_iso(value: str) -> bool:
    return datetime.fromisoformat(value).utcoffset() is not None and value.endswith(("Z", "+00:00"))


async def create(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": unique_name(), **fields}
    response = await api.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


async def test_health_reports_database_and_temporal(api: httpx.AsyncClient) -> None:
    response = await api.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["service"] == "training-orchestrator-api"
    assert body["database_connected"] is True
    assert body["temporal_connected"] is True
    assert is_utc_iso(body["timestamp"])


async def test_create_job_as_in_the_guide(api: httpx.AsyncClient, temporal_client: Client) -> None:
    name = unique_name("resnet50-training")
    response = await api.post("/jobs", json={"name": name, **GUIDE_JOB})
    assert response.status_code == 201
    job = response.json()
    assert re.fullmatch(r"train-[0-9a-f]{8}", job["job_id"])
    assert {k: job[k] for k in GUIDE_JOB} == GUIDE_JOB
    assert job["name"] == name
    assert job["status"] == "pending"
    assert job["retry_count"] == 0
    assert job["started_at"] is None and job["completed_at"] is None
    assert job["error_message"] is None
    assert is_utc_iso(job["created_at"]) and is_utc_iso(job["updated_at"])

    description = await temporal_client.get_schedule_handle(job["job_id"]).describe()
    assert description.id == job["job_id"]
    assert not description.schedule.state.paused
    # Temporal parsed the cron: the next firing is at 02:00 UTC.
    next_time = description.info.next_action_times[0]
    assert (next_time.hour, next_time.minute) == (2, 0)


async def test_job_without_schedule_runs_once_and_completes(
    api: httpx.AsyncClient, temporal_client: Client, busybox_image: str
) -> None:
    job = await create(api, image=busybox_image, command=["sh", "-c", "echo trained"])
    assert job["schedule"] is None
    assert job["checkpoint_path"] == f"/checkpoints/{job['job_id']}"
    done = await wait_for_status(api, job["job_id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    assert done["retry_count"] == 0
    assert done["error_message"] is None
    assert done["started_at"] <= done["completed_at"]
    # The one-off job still has its schedule (with no spec), so the UI shows it; its run was
    # started directly, with the trigger in its id, input and search attribute.
    description = await temporal_client.get_schedule_handle(job["job_id"]).describe()
    assert description.info.num_actions == 0
    assert description.info.next_action_times == []
    assert done["latest_run_id"].startswith(f"{job['job_id']}-manual-")
    run = await temporal_client.get_workflow_handle(done["latest_run_id"]).describe()
    assert run.typed_search_attributes.get(TRIGGER_ATTR) == "manual"


async def test_scheduled_job_runs_when_its_schedule_fires(
    api: httpx.AsyncClient, temporal_client: Client, busybox_image: str
) -> None:
    job = await create(
        api, image=busybox_image, command=["sh", "-c", "echo nightly"], schedule="0 2 * * *"
    )
    handle = temporal_client.get_schedule_handle(job["job_id"])
    # A backfill over a past 02:00 makes the schedule fire as its spec says, without waiting.
    await handle.backfill(
        ScheduleBackfill(
            start_at=datetime(2025, 1, 1, 1, 59, tzinfo=UTC),
            end_at=datetime(2025, 1, 1, 2, 1, tzinfo=UTC),
            overlap=ScheduleOverlapPolicy.ALLOW_ALL,
        )
    )
    done = await wait_for_status(api, job["job_id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    assert done["latest_run_id"].startswith(job["job_id"] + "-")


async def test_failing_job_is_retried_exactly_max_retries_times(
    api: httpx.AsyncClient, busybox_image: str, settings: Any
) -> None:
    job = await create(
        api,
        image=busybox_image,
        command=["sh", "-c", "echo step-$ATTEMPT; echo boom >&2; sleep 0.5; exit 3"],
        max_retries=2,
    )
    seen = await wait_for_status(api, job["job_id"], {"retrying"})
    assert seen["retry_count"] >= 1
    assert "exited with code 3" in seen["error_message"]
    done = await wait_for_status(api, job["job_id"], {"failed", "completed"})
    assert done["status"] == "failed"
    assert done["retry_count"] == 2
    assert "Attempt 3/3 exited with code 3" in done["error_message"]
    assert "boom" in done["error_message"] and "step-3" in done["error_message"]
    # Exactly three attempts ran: each left its log, and there is no fourth.
    run_dir = settings.log_dir / job["job_id"]
    logs = sorted(p.name for p in run_dir.glob("*/attempt-*.log"))
    assert logs == ["attempt-1.log", "attempt-2.log", "attempt-3.log"]


async def test_retry_resets_and_runs_again(api: httpx.AsyncClient, busybox_image: str) -> None:
    job = await create(api, image=busybox_image, command=["sh", "-c", "exit 1"], max_retries=0)
    failed = await wait_for_status(api, job["job_id"], {"failed", "completed"})
    assert failed["status"] == "failed"
    first_run = failed["latest_run_id"]

    update = await api.put(f"/jobs/{job['job_id']}", json={"command": ["sh", "-c", "exit 0"]})
    assert update.status_code == 200
    response = await api.post(f"/jobs/{job['job_id']}/retry")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "pending"
    assert body["retry_count"] == 0
    assert body["error_message"] is None
    done = await wait_for_status(api, job["job_id"], {"completed", "failed"})
    assert done["status"] == "completed"
    assert done["latest_run_id"] != first_run


async def test_running_job_refuses_put_delete_and_retry(
    api: httpx.AsyncClient, busybox_image: str
) -> None:
    job = await create(api, image=busybox_image, command=["sh", "-c", "sleep 3"])
    await wait_for_status(api, job["job_id"], {"running"})
    for method, path, body in [
        ("PUT", f"/jobs/{job['job_id']}", {"max_retries": 5}),
        ("DELETE", f"/jobs/{job['job_id']}", None),
        ("POST", f"/jobs/{job['job_id']}/retry", None),
    ]:
        response = await api.request(method, path, json=body)
        assert response.status_code == 409, (method, response.text)
        assert response.json()["error_type"] == "JobRunning"
    await wait_for_status(api, job["job_id"], {"completed"})


async def test_list_filters_pages_and_sorts_newest_first(api: httpx.AsyncClient) -> None:
    created = [await create(api, **GUIDE_JOB) for _ in range(3)]
    everything = (await api.get("/jobs", params={"page_size": 200})).json()
    assert everything["page"] == 1 and everything["page_size"] == 200
    ids = [job["job_id"] for job in everything["jobs"]]
    assert ids.index(created[2]["job_id"]) < ids.index(created[1]["job_id"])
    assert ids.index(created[1]["job_id"]) < ids.index(created[0]["job_id"])

    default = (await api.get("/jobs")).json()
    assert default["page_size"] == 50 and default["total"] == everything["total"]

    page = (await api.get("/jobs", params={"page": 1, "page_size": 2})).json()
    assert len(page["jobs"]) == 2 and page["total"] == everything["total"]
    second = (await api.get("/jobs", params={"page": 2, "page_size": 2})).json()
    assert {j["job_id"] for j in page["jobs"]}.isdisjoint(j["job_id"] for j in second["jobs"])

    pending = (await api.get("/jobs", params={"status_filter": "pending"})).json()
    assert pending["total"] >= 3
    assert all(job["status"] == "pending" for job in pending["jobs"])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status_filter": "exploded"}, "status_filter"),
        ({"page": 0}, "page"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 201}, "page_size"),
        ({"page": "two"}, "page"),
    ],
)
async def test_list_rejects_bad_parameters(
    api: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    response = await api.get("/jobs", params=params)
    assert response.status_code == 400
    assert response.json()["error_type"] == "ValidationError"
    assert field in response.json()["detail"]


async def test_get_update_and_delete(api: httpx.AsyncClient, temporal_client: Client) -> None:
    job = await create(api, **GUIDE_JOB)
    job_id = job["job_id"]
    got = (await api.get(f"/jobs/{job_id}")).json()
    assert got == job

    response = await api.put(f"/jobs/{job_id}", json={"schedule": "0 3 * * *", "max_retries": 5})
    assert response.status_code == 200
    updated = response.json()
    assert updated["schedule"] == "0 3 * * *" and updated["max_retries"] == 5
    assert updated["image"] == job["image"] and updated["command"] == job["command"]
    handle = temporal_client.get_schedule_handle(job_id)
    assert (await handle.describe()).info.next_action_times[0].hour == 3

    one_off = (await api.put(f"/jobs/{job_id}", json={"schedule": None})).json()
    assert one_off["schedule"] is None
    assert (await handle.describe()).info.next_action_times == []

    response = await api.delete(f"/jobs/{job_id}")
    assert response.status_code == 204 and response.content == b""
    missing = await api.get(f"/jobs/{job_id}")
    assert missing.status_code == 404
    assert missing.json() == {"detail": f"Job {job_id} not found", "error_type": "JobNotFound"}
    assert not [s async for s in await temporal_client.list_schedules() if s.id == job_id]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/retry")],
)
async def test_unknown_job_is_404(api: httpx.AsyncClient, method: str, suffix: str) -> None:
    body = {"max_retries": 1} if method == "PUT" else None
    response = await api.request(method, f"/jobs/train-00000000{suffix}", json=body)
    assert response.status_code == 404
    assert response.json()["error_type"] == "JobNotFound"


async def test_duplicate_name_is_409(api: httpx.AsyncClient) -> None:
    job = await create(api, **GUIDE_JOB)
    response = await api.post("/jobs", json={**GUIDE_JOB, "name": job["name"]})
    assert response.status_code == 409
    assert response.json()["error_type"] == "DuplicateJobName"
    other = await create(api, **GUIDE_JOB)
    renamed = await api.put(f"/jobs/{other['job_id']}", json={"name": job["name"]})
    assert renamed.status_code == 409
    assert renamed.json()["error_type"] == "DuplicateJobName"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"schedule": "61 * * * *"}, "schedule"),
        ({"schedule": "every day"}, "schedule"),
        ({"command": []}, "command"),
        ({"command": "python train.py"}, "command"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 101}, "max_retries"),
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"image": ""}, "image"),
        ({"image": "i" * 513}, "image"),
        ({"checkpoint_path": "/checkpoints/../../etc"}, "checkpoint_path"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_invalid_job_is_400_and_writes_nothing(
    api: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    before = (await api.get("/stats")).json()["total_jobs"]
    response = await api.post("/jobs", json={**GUIDE_JOB, "name": unique_name(), **change})
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"detail", "error_type"}
    assert body["error_type"] == "ValidationError"
    assert field in body["detail"]
    assert (await api.get("/stats")).json()["total_jobs"] == before


async def test_body_that_is_not_json_is_400(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/jobs", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error_type"] == "ValidationError"
    assert "JSON" in response.json()["detail"]


async def test_invalid_update_is_400_and_changes_nothing(api: httpx.AsyncClient) -> None:
    job = await create(api, **GUIDE_JOB)
    for change in [{"schedule": "* * * *"}, {"max_retries": 500}, {"name": None}]:
        response = await api.put(f"/jobs/{job['job_id']}", json=change)
        assert response.status_code == 400, change
    assert (await api.get(f"/jobs/{job['job_id']}")).json() == job


async def test_stats_counts_jobs_by_status(api: httpx.AsyncClient) -> None:
    before = (await api.get("/stats")).json()
    await create(api, **GUIDE_JOB)
    after = (await api.get("/stats")).json()
    keys = {"total_jobs", "pending", "running", "completed", "failed", "retrying"}
    assert keys <= set(after)
    assert after["total_jobs"] == before["total_jobs"] + 1
    assert after["pending"] == before["pending"] + 1
    statuses = ("pending", "running", "completed", "failed", "retrying", "cancelled")
    assert sum(after[s] for s in statuses) == after["total_jobs"]


async def test_job_ids_are_never_reused(api: httpx.AsyncClient, settings: Any) -> None:
    job = await create(api, **GUIDE_JOB)
    assert (await api.delete(f"/jobs/{job['job_id']}")).status_code == 204
    from sqlalchemy import select

    from store.db import create_engine, create_sessionmaker
    from store.models import IssuedJobId

    engine = create_engine(settings.sqlalchemy_url)
    async with create_sessionmaker(engine)() as session:
        issued = await session.scalar(
            select(IssuedJobId).where(IssuedJobId.job_id == job["job_id"])
        )
    await engine.dispose()
    assert issued is not None, "a deleted job's id stays issued, so it is never drawn again"


async def test_docs_are_served(api: httpx.AsyncClient) -> None:
    assert (await api.get("/docs")).status_code == 200
    assert (await api.get("/redoc")).status_code == 200
    spec = (await api.get("/openapi.json")).json()
    assert {"/health", "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/retry", "/stats"} <= set(
        spec["paths"]
    )


async def test_fifty_concurrent_reads_share_a_small_pool(
    api: httpx.AsyncClient, settings: Any, temporal_client: Client
) -> None:
    """A request holds one pooled connection at a time, so a pool of 2 serves 50 at once.

    A request that held its session while opening a second one deadlocked here: every
    connection held, every request waiting for one more, until the pool timeout.
    """
    job = await create(api, **GUIDE_JOB)
    small = make_settings(
        temporal_client,
        settings.data_dir,
        database_pool_size=2,
        database_max_overflow=0,
        database_pool_timeout_seconds=5,
    )
    async with api_client(small) as crowded:
        answers = await asyncio.gather(*(crowded.get(f"/jobs/{job['job_id']}") for _ in range(50)))
        health = await crowded.get("/health")
    assert [answer.status_code for answer in answers] == [200] * 50
    assert {answer.json()["job_id"] for answer in answers} == {job["job_id"]}
    assert health.status_code == 200
