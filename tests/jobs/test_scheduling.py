"""Scheduling users can see and steer, on the real dev server (Schedules need it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from core.settings import Settings
from tests.conftest import (
    api_client,
    eventually,
    expire_leader_lease,
    temporal_cli,
    unique_name,
    wait_for_status,
)
from workflows import TrainingJobWorkflow, TrainingRunInput


async def create(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await api.post("/jobs", json={"name": unique_name("sched"), **fields})
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


async def runs_of(api: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    response = await api.get(f"/jobs/{job_id}/runs", params={"page_size": 200})
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()["runs"]
    return runs


async def all_finished(api: httpx.AsyncClient, job_id: str, count: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        runs = await runs_of(api, job_id)
        finished = [r for r in runs if r["status"] in ("completed", "failed", "cancelled")]
        return runs if len(runs) >= count and len(finished) == len(runs) else None

    result: list[dict[str, Any]] = await eventually(check, timeout=90)
    return result


@pytest.fixture(scope="module")
async def every_minute(api: httpx.AsyncClient, busybox_image: str) -> AsyncIterator[str]:
    """A job firing every minute, created first so its firing comes while others run."""
    job = await create(api, image=busybox_image, command=["true"], schedule="* * * * *")
    yield job["job_id"]


async def test_every_trigger_is_recorded(
    api: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
    busybox_image: str,
    every_minute: str,
) -> None:
    job = await create(api, image=busybox_image, command=["true"], schedule="0 2 * * *")
    job_id = job["job_id"]

    manual = await api.post(f"/jobs/{job_id}/trigger")
    assert manual.status_code == 200, manual.text
    await all_finished(api, job_id, 1)
    assert (await api.post(f"/jobs/{job_id}/retry")).status_code == 200
    await all_finished(api, job_id, 2)
    backfill = await api.post(
        f"/jobs/{job_id}/backfill",
        json={"start": "2025-03-01T00:00:00+00:00", "end": "2025-03-02T00:00:00+00:00"},
    )
    assert backfill.status_code == 200 and backfill.json()["count"] == 1
    await all_finished(api, job_id, 3)
    await temporal_client.start_workflow(
        TrainingJobWorkflow.run,
        TrainingRunInput(job_id=job_id),
        id=f"{job_id}-from-sdk",
        task_queue=settings.task_queue,
    )
    runs = await all_finished(api, job_id, 4)
    by_trigger = {run["trigger"]: run for run in runs}
    assert set(by_trigger) == {"manual", "retry", "backfill", "sdk"}
    assert by_trigger["backfill"]["scheduled_at"].startswith("2025-03-01T02:00:00")
    assert by_trigger["sdk"]["run_id"] == f"{job_id}-from-sdk"
    assert by_trigger["sdk"]["scheduled_at"] is None
    run = by_trigger["manual"]
    assert run["status"] == "completed" and run["attempts"][0]["exit_code"] == 0
    assert run["temporal_ui_url"] == settings.run_ui_url(run["run_id"])
    assert run["temporal_ui_url"].startswith("http://localhost:8233/namespaces/default/workflows/")
    single = await api.get(f"/jobs/{job_id}/runs/{run['run_id']}")
    assert single.json() == run
    assert (await api.get(f"/jobs/{job_id}/runs/nope")).json()["error_type"] == "RunNotFound"
    failed_only = await api.get(f"/jobs/{job_id}/runs", params={"status_filter": "failed"})
    assert failed_only.json()["total"] == 0

    # The Trigger search attribute makes the same split visible to the CLI. TRIGGER is a
    # keyword of Temporal's query language, hence the backquotes.
    listed = temporal_cli(
        settings, "workflow", "list", "--query", f"JobId='{job_id}' AND `Trigger`='backfill'"
    )
    assert by_trigger["backfill"]["run_id"] in listed

    # The job created first fires on its spec within a minute.
    scheduled = await eventually(lambda: all_finished(api, every_minute, 1), timeout=90)
    assert scheduled[0]["trigger"] == "schedule"
    fired = datetime.fromisoformat(scheduled[0]["scheduled_at"])
    assert fired.second == 0


async def test_backfill_dry_run_matches_what_runs(
    api: httpx.AsyncClient, busybox_image: str
) -> None:
    job = await create(
        api,
        image=busybox_image,
        command=["true"],
        schedule="0 */6 * * *",
        timezone="Asia/Kolkata",
    )
    body = {"start": "2025-06-01T00:00:00Z", "end": "2025-06-02T00:00:00Z", "dry_run": True}
    dry = await api.post(f"/jobs/{job['job_id']}/backfill", json=body)
    assert dry.status_code == 200, dry.text
    times = dry.json()["times"]
    assert [t["local"][11:16] for t in times] == ["06:00", "12:00", "18:00", "00:00"]
    assert times[0]["utc"] == "2025-06-01T00:30:00Z"
    assert await runs_of(api, job["job_id"]) == [], "a dry run starts nothing"

    real = await api.post(f"/jobs/{job['job_id']}/backfill", json={**body, "dry_run": False})
    assert real.json()["count"] == 4
    runs = await all_finished(api, job["job_id"], 4)
    assert sorted(r["scheduled_at"] for r in runs) == [t["utc"] for t in times]
    assert {r["trigger"] for r in runs} == {"backfill"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"start": "2025-06-01T00:00:00", "end": "2025-06-02T00:00:00Z"}, "start"),
        ({"start": "2025-06-02T00:00:00Z", "end": "2025-06-01T00:00:00Z"}, "end must be after"),
        ({"start": "2020-01-01T00:00:00Z", "end": "2025-01-01T00:00:00Z"}, "BACKFILL_MAX_FIRINGS"),
        # Years 1 to 9999 once blocked the event loop and answered 500.
        (
            {"start": "0001-01-01T00:00:00Z", "end": "9999-12-31T00:00:00Z", "dry_run": True},
            "BACKFILL_MAX_RANGE_DAYS",
        ),
        (
            {"start": "2025-06-01T00:00:00Z", "end": "2025-06-02T00:00:00Z", "overlap_policy": "x"},
            "overlap_policy",
        ),
    ],
)
async def test_bad_backfills_are_400(
    api: httpx.AsyncClient, body: dict[str, str], fragment: str
) -> None:
    job = await create(api, image="x:1", command=["true"], schedule="0 * * * *")
    response = await api.post(f"/jobs/{job['job_id']}/backfill", json=body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["detail"]
    assert await runs_of(api, job["job_id"]) == []


async def test_pause_and_resume_through_the_api_and_the_cli(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    job = await create(api, image="x:1", command=["true"], schedule="0 3 * * *")
    job_id = job["job_id"]
    assert job["paused"] is False and job["next_run_at"] is not None
    before = (await api.get("/stats")).json()

    paused = await api.post(f"/jobs/{job_id}/pause", json={"note": "data migration"})
    assert paused.status_code == 200
    assert paused.json()["paused"] is True and paused.json()["next_run_times"] == []
    stats = (await api.get("/stats")).json()
    assert stats["paused"] == before["paused"] + 1
    assert stats["scheduled"] == before["scheduled"] - 1
    resumed = await api.post(f"/jobs/{job_id}/resume")
    assert resumed.json()["paused"] is False and len(resumed.json()["next_run_times"]) == 5

    # The same control in the CLI shows in the API: directly on a single-job read...
    temporal_cli(
        settings, "schedule", "toggle", "--schedule-id", job_id, "--pause", "--reason", "cli"
    )
    assert (await api.get(f"/jobs/{job_id}")).json()["paused"] is True
    view = (await api.get(f"/jobs/{job_id}/schedule")).json()
    assert view["paused"] is True and view["note"] == "cli"
    assert [(e["event"], e["actor"]) for e in view["events"]][:3] == [
        ("paused", "ui/cli"),
        ("resumed", "anonymous"),
        ("paused", "anonymous"),
    ]
    assert view["events"][2]["note"] == "data migration"

    # ...and in lists within the reconciler's interval, with no single-job read. The suite's
    # API leads the cluster's reconciler (30 s ticks); it is taken to have died, so this
    # quicker replica takes the lease over.
    quick = settings.model_copy(update={"reconcile_interval_seconds": 0.5})
    await expire_leader_lease(settings)
    async with api_client(quick) as fast_api:
        temporal_cli(
            settings, "schedule", "toggle", "--schedule-id", job_id, "--unpause", "--reason", "x"
        )

        async def listed_unpaused() -> bool:
            jobs = (await fast_api.get("/jobs", params={"page_size": 200})).json()["jobs"]
            return any(j["job_id"] == job_id and not j["paused"] for j in jobs)

        await eventually(listed_unpaused, timeout=15)


async def test_pause_with_put_and_schedule_fields(api: httpx.AsyncClient) -> None:
    job = await create(
        api,
        image="x:1",
        command=["true"],
        schedule="15 4 * * *",
        timezone="Europe/Berlin",
        overlap_policy="buffer_one",
        catchup_window_seconds=600,
    )
    assert (job["timezone"], job["overlap_policy"], job["catchup_window_seconds"]) == (
        "Europe/Berlin",
        "buffer_one",
        600,
    )
    assert all(t["local"][11:16] == "04:15" for t in job["next_run_times"])
    updated = await api.put(
        f"/jobs/{job['job_id']}", json={"paused": True, "overlap_policy": "allow_all"}
    )
    assert updated.status_code == 200
    assert updated.json()["paused"] is True and updated.json()["overlap_policy"] == "allow_all"
    view = (await api.get(f"/jobs/{job['job_id']}/schedule")).json()
    assert view["paused"] is True and view["events"][0]["actor"] == "anonymous"


async def test_next_run_times_cross_a_daylight_saving_change(api: httpx.AsyncClient) -> None:
    # US clocks spring forward on Sunday 2027-03-14: noon local moves from 17:00Z to 16:00Z.
    job = await create(
        api, image="x:1", command=["true"], schedule="0 12 12-16 3 *", timezone="America/New_York"
    )
    times = job["next_run_times"]
    assert [t["local"] for t in times] == [
        "2027-03-12T12:00:00-05:00",
        "2027-03-13T12:00:00-05:00",
        "2027-03-14T12:00:00-04:00",
        "2027-03-15T12:00:00-04:00",
        "2027-03-16T12:00:00-04:00",
    ]
    assert [t["utc"][11:16] for t in times] == ["17:00", "17:00", "16:00", "16:00", "16:00"]


@pytest.mark.parametrize(
    "policy", ["skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all"]
)
async def test_manual_trigger_is_never_dropped(
    api: httpx.AsyncClient, busybox_image: str, policy: str
) -> None:
    job = await create(
        api,
        image=busybox_image,
        command=["sh", "-c", "sleep 2"],
        schedule="0 5 * * *",
        overlap_policy=policy,
    )
    job_id = job["job_id"]
    assert (await api.post(f"/jobs/{job_id}/trigger")).status_code == 200
    await wait_for_status(api, job_id, {"running"})
    refused = await api.post(f"/jobs/{job_id}/trigger")
    assert refused.status_code == 409 and refused.json()["error_type"] == "JobRunning"
    allowed = await api.post(f"/jobs/{job_id}/trigger", json={"allow_overlap": True})
    assert allowed.status_code == 200
    runs = await all_finished(api, job_id, 2)
    assert len(runs) == 2 and {r["trigger"] for r in runs} == {"manual"}
    assert {r["status"] for r in runs} == {"completed"}


async def test_skipped_firings_are_counted(api: httpx.AsyncClient, busybox_image: str) -> None:
    job = await create(
        api, image=busybox_image, command=["sh", "-c", "sleep 3"], schedule="*/10 * * * *"
    )
    # Three firings at once under the skip policy: one runs, two are skipped for overlap.
    response = await api.post(
        f"/jobs/{job['job_id']}/backfill",
        json={
            "start": "2025-01-01T00:00:00Z",
            "end": "2025-01-01T00:25:00Z",
            "overlap_policy": "skip",
        },
    )
    assert response.json()["count"] == 3
    await all_finished(api, job["job_id"], 1)
    view = (await api.get(f"/jobs/{job['job_id']}/schedule")).json()
    assert view["skipped_overlap"] == 2
    assert view["missed_catchup_window"] == 0
    assert len(await runs_of(api, job["job_id"])) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"overlap_policy": "sometimes"}, "overlap_policy"),
        ({"catchup_window_seconds": 1}, "catchup_window_seconds"),
        ({"schedule": "0 0 1 * 1"}, "day-of-month"),
        ({"schedule": "0 0 * * * 2026"}, "six"),
        ({"schedule": "0 0 L * *"}, "day-of-month"),
        ({"schedule": "@every 5m"}, "@every"),
        ({"schedule": "0 0 ? * *"}, "day-of-month"),
        ({"schedule": "5/15 * * * *"}, "minute"),
        ({"schedule": "0 25 * * *"}, "hour"),
    ],
)
async def test_invalid_schedule_settings_are_400(
    api: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    body = {"name": unique_name(), "image": "x:1", "command": ["true"], **change}
    response = await api.post("/jobs", json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]


async def test_stats_keep_the_guide_keys_and_add_new_ones(api: httpx.AsyncClient) -> None:
    stats = (await api.get("/stats")).json()
    guide = {"total_jobs", "pending", "running", "completed", "failed", "retrying"}
    assert guide | {"cancelled", "paused", "scheduled"} <= set(stats)
