"""The front door: keys and roles decided before the body is read, body and rate limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from core.settings import Settings
from tests.conftest import api_client, live_server, unique_name

ADMIN_KEY = "admin-key-0123456789"
VIEWER_KEY = "viewer-key-0123456789"
OPERATOR_KEY = "operator-key-0123456789"
JOB = {"image": "trainer:latest", "command": ["python", "train.py"], "schedule": "0 2 * * *"}


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return Settings.model_validate({**settings.model_dump(), **changes})


def secured(settings: Settings, **changes: Any) -> Settings:
    keys = f"dash:viewer:{VIEWER_KEY},ci-bot:operator:{OPERATOR_KEY}"
    return with_settings(
        settings, enable_api_auth=True, api_key=ADMIN_KEY, api_keys=keys, **changes
    )


async def _raw_request(url: str, head: str) -> bytes:
    """Send only a request's head, then read what the server answers within 10 s."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.encode())
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()


async def test_a_body_without_a_key_is_refused_unread(settings: Settings, worker: None) -> None:
    async with live_server(secured(settings)) as url:
        # 200 MB announced, none of it sent: the answer must come without waiting for it.
        head = (
            "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 209715200\r\n\r\n"
        )
        answer = await _raw_request(url, head)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b'"error_type":"AuthenticationError"' in answer
        # A malformed body without a key is 401 too, not 400.
        async with httpx.AsyncClient(base_url=url) as http:
            bad = await http.post("/jobs", content=b"{not json")
            assert bad.status_code == 401


async def test_bodies_over_max_body_bytes_are_413(settings: Settings, worker: None) -> None:
    limited = with_settings(settings, max_spec_bytes=1024, max_body_bytes=8192)
    async with live_server(limited) as url:
        head = "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 8193\r\n\r\n"
        answer = await _raw_request(url, head)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b'"error_type":"PayloadTooLarge"' in answer

        async def chunks() -> AsyncIterator[bytes]:
            # No Content-Length at all: chunked, counted as it arrives.
            for _ in range(64):
                yield b" " * 1024

        async with httpx.AsyncClient(base_url=url) as http:
            chunked = await http.post("/jobs", content=chunks())
            assert chunked.status_code == 413
            assert chunked.json()["error_type"] == "PayloadTooLarge"
            assert "MAX_BODY_BYTES" in chunked.json()["detail"]
            fits = await http.post("/jobs", json={**JOB, "name": unique_name()})
            assert fits.status_code == 201, fits.text
            await http.delete(f"/jobs/{fits.json()['job_id']}")


async def test_roles_decide_what_a_key_may_do(settings: Settings, worker: None) -> None:
    async with api_client(secured(settings)) as api:
        viewer, operator = {"X-API-Key": VIEWER_KEY}, {"X-API-Key": OPERATOR_KEY}
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        me = await api.get("/whoami", headers=viewer)
        assert me.json() == {"name": "dash", "role": "viewer", "auth_enabled": True}
        assert (await api.get("/whoami", headers=admin)).json()["name"] == "admin"
        assert (await api.get("/whoami")).status_code == 401

        assert (await api.get("/jobs", headers=viewer)).status_code == 200
        assert (await api.get("/stats", headers=viewer)).status_code == 200
        refused = await api.post("/jobs", json={**JOB, "name": unique_name()}, headers=viewer)
        assert refused.status_code == 403
        assert refused.json()["error_type"] == "Forbidden"
        assert VIEWER_KEY not in refused.text
        # Decided before the body is read: a viewer's malformed body is 403, not 400.
        assert (await api.post("/jobs", content=b"{", headers=viewer)).status_code == 403

        created = await api.post("/jobs", json={**JOB, "name": unique_name()}, headers=admin)
        assert created.status_code == 201
        job_id = created.json()["job_id"]
        for action in ["trigger", "retry", "cancel", "pause", "resume"]:
            denied = await api.post(f"/jobs/{job_id}/{action}", headers=viewer)
            assert denied.status_code == 403, action
        assert (await api.post(f"/jobs/{job_id}/pause", headers=operator)).status_code == 200
        assert (await api.post(f"/jobs/{job_id}/resume", headers=operator)).status_code == 200
        for change in [
            api.put(f"/jobs/{job_id}", json={"max_retries": 1}, headers=operator),
            api.delete(f"/jobs/{job_id}", headers=operator),
            api.post("/jobs", json={**JOB, "name": unique_name()}, headers=operator),
        ]:
            assert (await change).status_code == 403
        assert (await api.delete(f"/jobs/{job_id}", headers=admin)).status_code == 204


async def test_rate_limit_per_key(settings: Settings, worker: None) -> None:
    async with api_client(secured(settings, rate_limit_per_minute=3)) as api:
        viewer, operator = {"X-API-Key": VIEWER_KEY}, {"X-API-Key": OPERATOR_KEY}
        for _ in range(3):
            assert (await api.get("/stats", headers=viewer)).status_code == 200
        limited = await api.get("/stats", headers=viewer)
        assert limited.status_code == 429
        assert limited.json()["error_type"] == "RateLimited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        # Another key has its own budget, and /health is never limited.
        assert (await api.get("/stats", headers=operator)).status_code == 200
        for _ in range(5):
            assert (await api.get("/health")).status_code in (200, 503)


async def test_rate_limit_per_client_while_auth_is_off(settings: Settings, worker: None) -> None:
    async with api_client(with_settings(settings, rate_limit_per_minute=2)) as api:
        statuses = [(await api.get("/stats")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]


def test_bad_api_keys_stop_the_start_without_showing_keys(tmp_path: Path) -> None:
    for keys, problem in [
        ("ci:superuser:abcdefghijklmnop1", "role"),
        ("ci:viewer:short", "16+"),
        ("bad name:viewer:abcdefghijklmnop1", "name"),
        ("ci:viewer:abcdefghijklmnop1,ci:admin:abcdefghijklmnop2", "twice"),
    ]:
        with pytest.raises(ValidationError, match=problem) as raised:
            Settings(_env_file=None, data_dir=tmp_path, api_keys=keys)  # type: ignore[call-arg]
        assert "abcdefghijklmnop" not in str(raised.value)
    named = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path, enable_api_auth=True, api_keys=f"a:viewer:{VIEWER_KEY}"
    )
    assert [(k.name, k.role) for k in named.named_keys] == [("a", "viewer")]
    assert VIEWER_KEY not in repr(named.named_keys)
