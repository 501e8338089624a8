"""``LOG_FORMAT=json``: one JSON object per line, with the job and run ids where they apply.

The API and the worker run as their real entry points (``python -m api``, ``python -m
worker``) and their stderr is read line by line.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from core.logging import build_handler, log_context
from core.settings import Settings
from store.migrate import upgrade
from tests.api.test_metrics import free_port
from tests.conftest import api_client, eventually, make_settings, unique_name, wait_for_status

ROOT = Path(__file__).resolve().parents[2]


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line of the output, each of which must be one JSON object."""
    records = []
    for line in output.splitlines():
        if line.strip():
            record = json.loads(line)  # raises on any line that is not JSON
            assert isinstance(record, dict), line
            records.append(record)
    return records


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = build_handler("json", stream)
    logger = logging.getLogger("tests.logging.captured")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def test_json_lines_carry_the_ids_bound_around_them(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.info("before any job")
    with log_context(job_id="train-0123abcd", run_id="train-0123abcd-2030-01-01T00:00:00Z"):
        logger.warning("about %s", "the run")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("it failed")
    logger.info("after", extra={"temporal_workflow": {"workflow_id": "train-89abcdef-manual"}})
    logger.info("sdk run", extra={"temporal_activity": {"workflow_id": "someone-elses-id"}})

    before, about, failed, after, sdk = json_lines(stream.getvalue())
    assert before.keys() == {"time", "level", "logger", "message"}
    assert about["message"] == "about the run"
    assert (about["level"], about["logger"]) == ("WARNING", "tests.logging.captured")
    assert about["job_id"] == failed["job_id"] == "train-0123abcd"
    assert about["run_id"] == "train-0123abcd-2030-01-01T00:00:00Z"
    assert "RuntimeError: boom" in failed["exception"]
    # Outside the block, ids come from Temporal's record of the workflow, when there is one.
    assert (after["job_id"], after["run_id"]) == ("train-89abcdef", "train-89abcdef-manual")
    assert "job_id" not in sdk and sdk["run_id"] == "someone-elses-id"


async def test_api_lines_about_a_job_carry_its_id(settings: Settings, tmp_path: Path) -> None:
    await asyncio.to_thread(upgrade, f"sqlite+aiosqlite:///{tmp_path / 'orchestrator.db'}")
    port = free_port()
    env = {
        **os.environ,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "DATA_DIR": str(tmp_path),
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "TASK_QUEUE": "tests-logging-api",
        "API_PORT": str(port),
    }
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "api"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        async with httpx.AsyncClient(base_url=url) as http:

            async def up() -> bool:
                assert server.poll() is None, "the API exited"
                try:
                    return (await http.get("/openapi.json")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up, timeout=30)
            spec = {"image": "trainer:1", "command": ["true"], "schedule": "0 0 1 1 *"}
            created = await http.post("/jobs", json={"name": unique_name("logging"), **spec})
            assert created.status_code == 201, created.text
            job_id = created.json()["job_id"]
            assert (await http.get(f"/jobs/{job_id}")).status_code == 200
            assert (await http.get("/jobs/train-00000000")).status_code == 404
            assert (await http.delete(f"/jobs/{job_id}")).status_code == 204
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(server.communicate, timeout=30)

    records = json_lines(stderr)
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    by_request = {r["message"].split('"')[1]: r for r in access}
    assert by_request[f"GET /jobs/{job_id} HTTP/1.1"]["job_id"] == job_id
    assert by_request[f"DELETE /jobs/{job_id} HTTP/1.1"]["job_id"] == job_id
    assert by_request["GET /jobs/train-00000000 HTTP/1.1"]["job_id"] == "train-00000000"
    # A line about no job in particular names none, not the previous request's.
    assert "job_id" not in by_request["POST /jobs HTTP/1.1"]
    assert "job_id" not in by_request["GET /openapi.json HTTP/1.1"]
    assert any(r["logger"] == "uvicorn.error" for r in records), "uvicorn's own lines are JSON"


async def test_worker_activity_lines_carry_job_and_run_ids(
    temporal_client: Client, tmp_path: Path
) -> None:
    # The session's Temporal server; a database and task queue of its own.
    worker_settings = make_settings(temporal_client, tmp_path, task_queue="tests-logging-worker")
    await asyncio.to_thread(upgrade, worker_settings.sqlalchemy_url)
    env = {
        **os.environ,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "RUNTIME": "process",
        "DATA_DIR": str(tmp_path),
        "TEMPORAL_ADDRESS": worker_settings.temporal_address,
        "TASK_QUEUE": "tests-logging-worker",
        "WORKER_METRICS_PORT": "0",
        "HEARTBEAT_TIMEOUT_SECONDS": "5",
        "POLL_INTERVAL_SECONDS": "0.3",
        "STOP_GRACE_SECONDS": "1",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        async with api_client(worker_settings) as api:
            # The limit is exceeded: the attempt's activity logs it, then the run fails.
            body = {
                "name": unique_name("logging"),
                "image": "local-process",
                "command": ["/usr/bin/busybox", "sleep", "30"],
                "max_retries": 0,
                "timeout_seconds": 1,
            }
            created = await api.post("/jobs", json=body)
            assert created.status_code == 201, created.text
            job_id = created.json()["job_id"]
            done = await wait_for_status(api, job_id, {"completed", "failed"}, timeout=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(worker.communicate, timeout=30)

    assert done["status"] == "failed", done
    run_id = done["latest_run_id"]
    records = json_lines(stderr)
    exceeded = [r for r in records if "exceeded its 1 s" in r["message"]]
    assert exceeded, stderr
    assert [(r["job_id"], r["run_id"]) for r in exceeded] == [(job_id, run_id)]
    assert exceeded[0]["activity"] == "run_training_container"
    assert "{" not in exceeded[0]["message"], "the activity's info is in fields, not the text"
    about_the_run = [r for r in records if run_id in r["message"] or job_id in r["message"]]
    assert all(r.get("job_id") == job_id for r in about_the_run), about_the_run
