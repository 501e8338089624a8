"""Every change is recorded under the name of the key that made it, and repeats of the
POSTs that start things are answered once (Idempotency-Key)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select

from core.settings import Settings
from store.audit import events_of
from store.db import create_engine, create_sessionmaker
from store.models import Job
from tests.api.test_front_door import ADMIN_KEY, OPERATOR_KEY, VIEWER_KEY, secured
from tests.conftest import api_client, eventually, unique_name

ADMIN = {"X-API-Key": ADMIN_KEY}
OPERATOR = {"X-API-Key": OPERATOR_KEY}


async def _runs(api: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    response = await api.get(f"/jobs/{job_id}/runs", headers=ADMIN)
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()["runs"]
    return runs


async def test_actors_in_jobs_runs_schedule_events_and_audit(
    settings: Settings, worker: None, busybox_image: str
) -> None:
    spec = {
        "name": unique_name("actors"),
        "image": busybox_image,
        "command": ["sh", "-c", "sleep 30"],
        "schedule": "0 0 1 1 *",
    }
    async with api_client(secured(settings)) as api:
        created = (await api.post("/jobs", json=spec, headers=ADMIN)).json()
        job_id = created["job_id"]
        assert created["created_by"] == created["updated_by"] == "admin"
        paused = await api.post(f"/jobs/{job_id}/pause", json={"note": "hold"}, headers=OPERATOR)
        assert paused.status_code == 200
        resumed = await api.post(f"/jobs/{job_id}/resume", headers=OPERATOR)
        assert resumed.status_code == 200
        events = (await api.get(f"/jobs/{job_id}/schedule", headers=ADMIN)).json()["events"]
        assert [(e["event"], e["actor"]) for e in events[:2]] == [
            ("resumed", "ci-bot"),
            ("paused", "ci-bot"),
        ]

        assert (await api.post(f"/jobs/{job_id}/trigger", headers=OPERATOR)).status_code == 200
        running = await eventually(lambda: _running(api, job_id), timeout=60)
        assert running["triggered_by"] == "ci-bot"
        cancelled = await api.post(f"/jobs/{job_id}/cancel", headers=OPERATOR)
        assert cancelled.status_code == 200
        (run,) = await _runs(api, job_id)
        assert (run["triggered_by"], run["cancelled_by"]) == ("ci-bot", "ci-bot")

        updated = await api.put(f"/jobs/{job_id}", json={"max_retries": 1}, headers=ADMIN)
        assert updated.json()["updated_by"] == "admin"
        assert updated.json()["created_by"] == "admin"
        assert (await api.delete(f"/jobs/{job_id}", headers=ADMIN)).status_code == 204

    engine = create_engine(settings.sqlalchemy_url)
    async with create_sessionmaker(engine)() as session:
        trail = [(e.action, e.actor) for e in await events_of(session, job_id)]
    await engine.dispose()
    assert trail == [
        ("create", "admin"),
        ("pause", "ci-bot"),
        ("resume", "ci-bot"),
        ("trigger", "ci-bot"),
        ("cancel", "ci-bot"),
        ("update", "admin"),
        ("delete", "admin"),
    ]


async def _running(api: httpx.AsyncClient, job_id: str) -> dict[str, Any] | None:
    runs = await _runs(api, job_id)
    return runs[0] if runs and runs[0]["status"] == "running" else None


async def _count_named(settings: Settings, name: str) -> int:
    engine = create_engine(settings.sqlalchemy_url)
    async with create_sessionmaker(engine)() as session:
        count = await session.scalar(select(func.count()).where(Job.name == name))
    await engine.dispose()
    return int(count or 0)


async def test_idempotency_key_answers_a_repeat_once(settings: Settings, worker: None) -> None:
    spec = {
        "name": unique_name("once"),
        "image": "t:1",
        "command": ["true"],
        "schedule": "0 0 1 1 *",
    }
    key = {"Idempotency-Key": f"create-{spec['name']}"}
    async with api_client(secured(settings)) as api:
        first, second = await asyncio.gather(
            api.post("/jobs", json=spec, headers={**ADMIN, **key}),
            api.post("/jobs", json=spec, headers={**ADMIN, **key}),
        )
        statuses = sorted([first.status_code, second.status_code])
        # Concurrent repeats: one is answered, the other told the first is under way.
        assert statuses in ([201, 201], [201, 409]), (first.text, second.text)
        answered = first if first.status_code == 201 else second
        again = await api.post("/jobs", json=spec, headers={**ADMIN, **key})
        assert again.status_code == 201
        assert again.json() == answered.json()
        assert await _count_named(settings, spec["name"]) == 1

        other = await api.post("/jobs", json={**spec, "max_retries": 1}, headers={**ADMIN, **key})
        assert other.status_code == 409
        assert other.json()["error_type"] == "IdempotencyConflict"

        job_id = answered.json()["job_id"]
        retry_key = {**OPERATOR, "Idempotency-Key": "retry-1"}
        retried = await api.post(f"/jobs/{job_id}/retry", headers=retry_key)
        repeated = await api.post(f"/jobs/{job_id}/retry", headers=retry_key)
        assert retried.status_code == repeated.status_code == 200
        assert repeated.json() == retried.json()
        # The same key under another API key is that key's own.
        viewer = await api.post(
            f"/jobs/{job_id}/retry", headers={"X-API-Key": VIEWER_KEY, "Idempotency-Key": "x"}
        )
        assert viewer.status_code == 403
        bad = await api.post("/jobs", json=spec, headers={**ADMIN, "Idempotency-Key": "a b"})
        assert bad.status_code == 400
