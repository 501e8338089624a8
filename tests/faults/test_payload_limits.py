"""Output and specs of any size: they never overflow Temporal's payload limits.

A trainer's output reaches Temporal only as a bounded tail (in the attempt's result and in
the error message); a job spec too big to travel in a run's payloads is refused at the door
with a 400, before anything is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO, cast

import docker
import httpx
import pytest
from temporalio.client import Client

from core.settings import Settings
from store import log_files
from store.log_files import (
    TAIL_MAX_BYTES,
    TAIL_MAX_LINE_CHARS,
    TAIL_MAX_LINES,
    TAIL_WINDOW_BYTES,
    read_tail,
)
from tests.conftest import unique_name, wait_for_status
from workflows.failure_messages import MAX_ERROR_MESSAGE_BYTES

MIB = 1024 * 1024
# The biggest item the field validators allow; specs grow by many of them.
ITEM = 65_536


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


async def create(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await api.post("/jobs", json={"name": unique_name("payload"), **fields})
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


async def job_names(api: httpx.AsyncClient) -> tuple[int, set[str]]:
    names: set[str] = set()
    page, total = 1, 0
    while True:
        body = (await api.get("/jobs", params={"page": page, "page_size": 200})).json()
        total = body["total"]
        names |= {job["name"] for job in body["jobs"]}
        if page * 200 >= total:
            return total, names
        page += 1


async def schedule_ids(temporal_client: Client) -> set[str]:
    return {entry.id async for entry in await temporal_client.list_schedules()}


# -- a trainer's output ------------------------------------------------------------------------


def starts(settings: Settings, job: dict[str, Any]) -> int:
    """How many times the job's trainer started (each start appends a line)."""
    marker = settings.checkpoint_root_dir / job["checkpoint_path"].lstrip("/") / "starts"
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def containers_of(job: dict[str, Any]) -> list[object]:
    client = docker.from_env()
    try:
        label = f"io.training-orchestrator.job-id={job['job_id']}"
        return list(client.containers.list(all=True, filters={"label": label}))
    finally:
        client.close()


COUNT_START = 'echo start >> "$CHECKPOINT_DIR/starts"; '


async def test_one_8mb_line_of_output_does_not_fail_a_successful_run(
    api: httpx.AsyncClient, settings: Settings, busybox_image: str
) -> None:
    script = COUNT_START + "head -c 8388608 /dev/zero | tr '\\0' x; echo; exit 0"
    job = await create(api, image=busybox_image, command=sh(script))

    done = await wait_for_status(api, job["job_id"], {"completed", "failed"}, timeout=240)

    assert done["status"] == "completed", done["error_message"]
    assert done["retry_count"] == 0
    assert done["error_message"] is None
    assert starts(settings, done) == 1
    assert containers_of(done) == []


async def test_a_failed_run_with_3mb_of_output_reports_its_exit_code(
    api: httpx.AsyncClient, settings: Settings, busybox_image: str
) -> None:
    script = COUNT_START + "head -c 3145728 /dev/zero | tr '\\0' y; echo; echo last words; exit 3"
    job = await create(api, image=busybox_image, command=sh(script), max_retries=0)

    done = await wait_for_status(api, job["job_id"], {"completed", "failed"}, timeout=240)

    assert done["status"] == "failed" and done["retry_count"] == 0
    assert starts(settings, done) == 1
    assert containers_of(done) == []
    message = done["error_message"]
    assert "exited with code 3" in message, message[:300]
    assert len(message.encode()) <= MAX_ERROR_MESSAGE_BYTES
    assert "last words" in message  # the tail is still there, only bounded
    # The full output is still on disk for the logs endpoint.
    logs = await api.get(f"/jobs/{job['job_id']}/logs")
    assert logs.status_code == 200 and len(logs.text) > 3 * MIB


# -- a job's spec ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "status", "error_type", "setting"),
    [
        # Within MAX_BODY_BYTES (1 MiB) but over MAX_SPEC_BYTES (256 KiB): read, then refused.
        pytest.param(
            {"command": ["sh", "-c", "true", *(["x" * ITEM] * 12)]},
            400,
            "ValidationError",
            "MAX_SPEC_BYTES",
            id="768kb-command",
        ),
        pytest.param(
            {"env": {f"BIG_{i}": "e" * ITEM for i in range(10)}},
            400,
            "ValidationError",
            "MAX_SPEC_BYTES",
            id="640kb-env",
        ),
        # Over MAX_BODY_BYTES: refused while it arrives, never parsed.
        pytest.param(
            {"command": ["sh", "-c", "true", *(["x" * ITEM] * 128)]},
            413,
            "PayloadTooLarge",
            "MAX_BODY_BYTES",
            id="8mb-command",
        ),
        pytest.param(
            {"env": {f"BIG_{i}": "e" * ITEM for i in range(80)}},
            413,
            "PayloadTooLarge",
            "MAX_BODY_BYTES",
            id="5mb-env",
        ),
    ],
)
async def test_a_spec_too_big_for_a_run_is_refused_and_nothing_is_written(
    api: httpx.AsyncClient,
    temporal_client: Client,
    settings: Settings,
    busybox_image: str,
    fields: dict[str, Any],
    status: int,
    error_type: str,
    setting: str,
) -> None:
    name = unique_name("too-big")
    total_before, _ = await job_names(api)
    schedules_before = await schedule_ids(temporal_client)

    body = {"name": name, "image": busybox_image, "command": ["true"], **fields}
    response = await api.post("/jobs", json=body)

    assert response.status_code == status, response.text[:300]
    error = response.json()
    assert error["error_type"] == error_type
    assert set(error) == {"detail", "error_type"}
    assert setting in error["detail"]
    spec_bytes = len(json.dumps(fields).encode())
    limit = settings.max_spec_bytes if status == 400 else settings.max_body_bytes
    assert str(limit) in error["detail"]
    assert spec_bytes > limit
    total_after, names = await job_names(api)
    assert total_after == total_before
    assert name not in names
    assert await schedule_ids(temporal_client) == schedules_before


async def test_an_update_that_makes_the_spec_too_big_is_refused_and_changes_nothing(
    api: httpx.AsyncClient, busybox_image: str, settings: Settings
) -> None:
    job = await create(
        api,
        image=busybox_image,
        command=["true"],
        env={"SMALL": "1"},
        schedule="0 0 1 1 *",
        paused=True,
    )
    job_id = job["job_id"]
    # Each field alone fits; together they do not.
    half = settings.max_spec_bytes // 2 // ITEM + 1
    first = await api.put(f"/jobs/{job_id}", json={"command": ["true", *(["c" * ITEM] * half)]})
    assert first.status_code == 200, first.text[:300]

    response = await api.put(
        f"/jobs/{job_id}", json={"env": {f"E_{i}": "v" * ITEM for i in range(half)}}
    )

    assert response.status_code == 400, response.text[:300]
    assert response.json()["error_type"] == "ValidationError"
    assert "MAX_SPEC_BYTES" in response.json()["detail"]
    after = (await api.get(f"/jobs/{job_id}")).json()
    assert after["env"] == {"SMALL": "1"}
    assert after["command"] == first.json()["command"]
    assert after["updated_at"] == first.json()["updated_at"]

    # Shrinking it back is allowed.
    shrunk = await api.put(f"/jobs/{job_id}", json={"command": ["true"]})
    assert shrunk.status_code == 200, shrunk.text[:300]


async def test_a_spec_just_under_the_limit_is_accepted(
    api: httpx.AsyncClient, busybox_image: str, settings: Settings
) -> None:
    items = settings.max_spec_bytes // ITEM - 1
    job = await create(
        api,
        image=busybox_image,
        command=["true", *(["k" * ITEM] * items)],
        schedule="0 0 1 1 *",
        paused=True,
    )
    assert len(job["command"]) == items + 1


# -- reading the tail --------------------------------------------------------------------------


def test_the_tail_is_read_from_the_end_of_a_100mb_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "attempt-1.log"
    last = [f"line {i}: loss 0.{i}" for i in range(30)]
    with open(path, "wb") as handle:
        # 100 MB of hole between the first line and the last ones.
        handle.write(b"first line\n")
        handle.seek(100 * MIB)
        handle.write(("\n" + "\n".join(last) + "\n").encode())
    assert os.stat(path).st_size > 100 * MIB
    read: list[int] = []

    def counting_open(file: Path, mode: str) -> BinaryIO:
        handle = open(file, mode)  # noqa: SIM115 - closed by read_tail
        real_read = handle.read

        def counted(size: int = -1) -> bytes:
            data = real_read(size)
            read.append(len(data))
            return data

        handle.read = counted  # type: ignore[method-assign]
        return cast(BinaryIO, handle)

    monkeypatch.setattr(log_files, "open", counting_open, raising=False)

    tail = read_tail(path)

    assert tail.splitlines() == last[-TAIL_MAX_LINES:]
    assert len(tail.encode()) <= TAIL_MAX_BYTES
    assert 0 < sum(read) <= TAIL_WINDOW_BYTES + 1


def test_long_lines_in_the_tail_keep_their_start_and_are_marked(tmp_path: Path) -> None:
    path = tmp_path / "attempt-1.log"
    path.write_text("short\n" + "é" * 5_000 + "\r\nend\n")

    lines = read_tail(path).splitlines()

    assert lines[0] == "short" and lines[-1] == "end"
    assert lines[1] == "é" * TAIL_MAX_LINE_CHARS + " [... 4000 more characters cut]"


def test_a_line_longer_than_the_window_read_shows_its_end(tmp_path: Path) -> None:
    path = tmp_path / "attempt-1.log"
    path.write_text("a" * 10 * MIB + "z" * TAIL_MAX_LINE_CHARS + "\nend")

    lines = read_tail(path).splitlines()

    assert lines == ["[...] " + "z" * TAIL_MAX_LINE_CHARS, "end"]


def test_the_tail_keeps_to_its_total_bound(tmp_path: Path) -> None:
    path = tmp_path / "attempt-1.log"
    path.write_text("".join(f"{i:04d} " + "w" * 2000 + "\n" for i in range(100)))

    tail = read_tail(path)

    assert 0 < len(tail.encode()) <= TAIL_MAX_BYTES
    assert tail.splitlines()[-1].startswith("0099 ")


def test_the_tail_of_a_missing_or_empty_log_is_empty(tmp_path: Path) -> None:
    assert read_tail(tmp_path / "missing.log") == ""
    (tmp_path / "empty.log").write_bytes(b"")
    assert read_tail(tmp_path / "empty.log") == ""
