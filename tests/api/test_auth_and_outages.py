"""API keys, and what clients see when Temporal or the database cannot be reached."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.client import Client

from core.settings import Settings
from tests.conftest import api_client, make_settings, unique_name

JOB = {"image": "trainer:latest", "command": ["python", "train.py"], "schedule": "0 2 * * *"}


async def test_auth_on_requires_the_key(settings: Settings, worker: None) -> None:
    secured = Settings.model_validate(
        {**settings.model_dump(), "enable_api_auth": True, "api_key": "s3cret-key"}
    )
    async with api_client(secured) as api:
        for path in ["/jobs", "/stats", "/jobs/train-00000000"]:
            response = await api.get(path)
            assert response.status_code == 401, path
            assert response.json()["error_type"] == "AuthenticationError"
            wrong = await api.get(path, headers={"X-API-Key": "s3cret-kez"})
            assert wrong.status_code == 401
        assert (await api.get("/jobs", headers={"X-API-Key": "s3cret-key"})).status_code == 200
        bearer = {"Authorization": "Bearer s3cret-key"}
        assert (await api.get("/stats", headers=bearer)).status_code == 200
        created = await api.post("/jobs", json={**JOB, "name": unique_name()}, headers=bearer)
        assert created.status_code == 201
        # Open paths stay open.
        for path in ["/health", "/docs", "/redoc", "/openapi.json"]:
            assert (await api.get(path)).status_code == 200, path


async def test_auth_off_by_default(api: object, settings: Settings) -> None:
    assert settings.enable_api_auth is False


def test_auth_without_a_key_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="API_KEY"):
        Settings(_env_file=None, enable_api_auth=True, data_dir=tmp_path)  # type: ignore[call-arg]


async def test_temporal_down_is_503_and_writes_nothing(
    settings: Settings, temporal_client: Client
) -> None:
    offline = Settings.model_validate(
        {**settings.model_dump(), "temporal_address": "127.0.0.1:1", "rpc_timeout_seconds": 2}
    )
    async with api_client(offline) as api:
        health = await api.get("/health")
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "unhealthy"
        assert body["database_connected"] is True
        assert body["temporal_connected"] is False

        before = (await api.get("/stats")).json()["total_jobs"]
        name = unique_name()
        response = await api.post("/jobs", json={**JOB, "name": name})
        assert response.status_code == 503, response.text
        assert response.json()["error_type"] == "ServiceUnavailable"
        assert "Traceback" not in response.text
        assert (await api.get("/stats")).json()["total_jobs"] == before
    # No schedule was left behind either.
    assert not [s async for s in await temporal_client.list_schedules() if s.id == name]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_database_down_is_503(temporal_client: Client, tmp_path: Path, backend: str) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    url = {
        "sqlite": f"sqlite+aiosqlite:///{blocker}/db.sqlite",
        "postgresql": "postgresql+asyncpg://nobody:nothing@127.0.0.1:1/none",
    }[backend]
    broken = make_settings(temporal_client, tmp_path, database_url=url)
    async with api_client(broken) as api:
        health = await api.get("/health")
        assert health.status_code == 503
        assert health.json()["database_connected"] is False
        assert health.json()["temporal_connected"] is True
        response = await api.get("/jobs")
        assert response.status_code == 503
        assert response.json() == {
            "detail": "The database is unavailable",
            "error_type": "ServiceUnavailable",
        }
