"""What the API refuses at the door (400 naming the field): secrets it must not hand out,
mail it must not send, paths it must not mount, names that would drive a terminal."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from core.settings import Settings
from tests.api.test_front_door import with_settings
from tests.conftest import api_client, unique_name

JOB = {"image": "trainer:latest", "command": ["python", "train.py"], "schedule": "0 0 1 1 *"}


async def _refused(api: httpx.AsyncClient, change: dict[str, Any]) -> str:
    response = await api.post("/jobs", json={**JOB, "name": unique_name(), **change})
    assert response.status_code == 400, response.text
    assert response.json()["error_type"] == "ValidationError"
    detail: str = response.json()["detail"]
    return detail


async def test_secret_env_only_from_the_allowlist(settings: Settings, worker: None) -> None:
    allowing = with_settings(settings, secret_env_allow=["WANDB_API_KEY", "HF_*", "SLACK_*"])
    async with api_client(allowing) as api:
        for name in ["DATABASE_URL", "SLACK_BOT_TOKEN", "API_KEY", "SMTP_PASSWORD"]:
            detail = await _refused(api, {"secret_env": [name]})
            assert name in detail and "own settings" in detail
        detail = await _refused(api, {"secret_env": ["HF_TOKEN", "AWS_SECRET_ACCESS_KEY"]})
        assert "AWS_SECRET_ACCESS_KEY" in detail and "SECRET_ENV_ALLOW" in detail
        ok = await api.post(
            "/jobs",
            json={**JOB, "name": unique_name(), "secret_env": ["WANDB_API_KEY", "HF_TOKEN"]},
        )
        assert ok.status_code == 201, ok.text
        job_id = ok.json()["job_id"]
        changed = await api.put(f"/jobs/{job_id}", json={"secret_env": ["PATH"]})
        assert changed.status_code == 400 and "PATH" in changed.json()["detail"]
        assert (await api.delete(f"/jobs/{job_id}")).status_code == 204
    async with api_client(with_settings(settings, secret_env_allow=[])) as api:
        detail = await _refused(api, {"secret_env": ["WANDB_KEY"]})
        assert "SECRET_ENV_ALLOW (empty)" in detail


async def test_per_job_email_only_to_allowed_domains(settings: Settings, worker: None) -> None:
    mail = {"smtp_host": "127.0.0.1", "smtp_from": "o@corp.example", "smtp_to": ["t@corp.example"]}
    async with api_client(with_settings(settings, **mail)) as api:
        detail = await _refused(api, {"notifications": {"email_to": ["a@corp.example"]}})
        assert "EMAIL_ALLOWED_DOMAINS" in detail and "no per-job recipients" in detail
    allowing = with_settings(settings, **mail, email_allowed_domains="corp.example,Lab.Example")
    async with api_client(allowing) as api:
        detail = await _refused(api, {"notifications": {"email_to": ["x@evil.example"]}})
        assert "x@evil.example" in detail
        ok = await api.post(
            "/jobs",
            json={
                **JOB,
                "name": unique_name(),
                "notifications": {"email_to": ["a@corp.example", "b@LAB.example"]},
            },
        )
        assert ok.status_code == 201, ok.text
        assert (await api.delete(f"/jobs/{ok.json()['job_id']}")).status_code == 204


@pytest.mark.parametrize(
    "path",
    [
        "//",
        "//etc",
        "/a//b",
        "/a:/etc:rw",
        "/bin",
        "/etc",
        "/etc/ssl",
        "/usr/local/ckpt",
        "/proc/1",
        "/sys",
        "/dev/shm",
        "/boot",
        "/lib",
        "/lib64/x",
        "/sbin",
        "/ckpt\nx",
        "/ckpt\x1b[2J",
        "/ckpt\u202e",
        "/a/../etc",
        "/a/./b",
        "/checkpoints",
        "/checkpoints/",
        "/library/x",
        "relative/path",
        "/",
    ],
)
async def test_checkpoint_paths_that_could_hide_or_reach_the_system(
    api: httpx.AsyncClient, path: str
) -> None:
    assert "checkpoint_path" in await _refused(api, {"checkpoint_path": path})


async def test_checkpoint_paths_lose_a_trailing_slash(api: httpx.AsyncClient) -> None:
    path = f"/ckpt/{unique_name()}"
    created = await api.post(
        "/jobs", json={**JOB, "name": unique_name(), "checkpoint_path": f"{path}/"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["checkpoint_path"] == path
    assert (await api.delete(f"/jobs/{created.json()['job_id']}")).status_code == 204


async def test_nested_checkpoint_paths_of_two_jobs_conflict(api: httpx.AsyncClient) -> None:
    outer = f"/ckpt/{unique_name()}"
    first = await api.post("/jobs", json={**JOB, "name": unique_name(), "checkpoint_path": outer})
    assert first.status_code == 201
    shared = await api.post("/jobs", json={**JOB, "name": unique_name(), "checkpoint_path": outer})
    assert shared.status_code == 201  # the same directory may be shared
    for nested in (f"{outer}/inner", "/ckpt"):
        refused = await api.post(
            "/jobs", json={**JOB, "name": unique_name(), "checkpoint_path": nested}
        )
        assert refused.status_code == 409, refused.text
        assert refused.json()["error_type"] == "CheckpointPathConflict"
        assert outer in refused.json()["detail"] or nested in refused.json()["detail"]
    moved = await api.put(f"/jobs/{shared.json()['job_id']}", json={"checkpoint_path": "/ckpt"})
    assert moved.status_code == 409
    for job in (first, shared):
        assert (await api.delete(f"/jobs/{job.json()['job_id']}")).status_code == 204


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "evil\x00name"}, "name"),
        ({"name": "\x1b[31mred"}, "name"),
        ({"name": "a\r\nb"}, "name"),
        ({"name": "invoice\u202egpj.exe"}, "name"),
        ({"image": "busybox\x1b"}, "image"),
        ({"command": ["sh", "-c", "echo\x00"]}, "command"),
        ({"env": {"A": "x\x00y"}}, "env"),
        ({"resources": {"memory": "99999999999999999999g"}}, "resources.memory"),
        ({"resources": {"memory": "5000g"}}, "resources.memory"),
        ({"resources": {"memory": "1k"}}, "resources.memory"),
        ({"resources": {"cpus": "2"}}, "resources.cpus"),
        ({"paused": "yes"}, "paused"),
        ({"max_retries": "3"}, "max_retries"),
    ],
)
async def test_values_that_would_fail_later_or_mislead(
    api: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    assert field in await _refused(api, change)


async def test_multi_line_commands_and_notes_keep_their_newlines(api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/jobs",
        json={
            **JOB,
            "name": unique_name(),
            "command": ["sh", "-c", "echo a\n\techo b"],
            "resources": {"memory": "4096g"},
        },
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["job_id"]
    paused = await api.post(f"/jobs/{job_id}/pause", json={"note": "line one\nline two"})
    assert paused.status_code == 200
    bad_note = await api.post(f"/jobs/{job_id}/pause", json={"note": "\x1b]0;pwned\x07"})
    assert bad_note.status_code == 400 and "note" in bad_note.json()["detail"]
    assert (await api.delete(f"/jobs/{job_id}")).status_code == 204
