"""A trainer's output of any shape never stalls the worker nor grows the log without bound."""

from __future__ import annotations

import docker
from temporalio.client import Client

from core.settings import Settings
from store.log_files import attempt_logs
from tests.conftest import api_client, make_settings, unique_name, wait_for_status
from worker import build_worker

MIB = 1024 * 1024


async def test_a_64mb_line_without_newline_completes_within_the_log_bound(
    temporal_client: Client, settings: Settings, busybox_image: str
) -> None:
    local = make_settings(
        temporal_client,
        settings.data_dir,
        task_queue=unique_name("tests-output"),
        max_log_bytes_per_attempt=MIB,
        max_log_line_bytes=64 * 1024,
        heartbeat_timeout_seconds=5,
    )
    # 64 MiB of 'x' with no newline, then a last line; every start is counted.
    script = (
        'echo start >> "$CHECKPOINT_DIR/starts"; '
        "head -c 67108864 /dev/zero | tr '\\0' x; echo; echo done; exit 0"
    )
    body = {
        "name": unique_name("output"),
        "image": busybox_image,
        "command": ["sh", "-c", script],
        "max_retries": 0,
    }
    async with build_worker(local, temporal_client) as worker, worker, api_client(local) as api:
        created = await api.post("/jobs", json=body)
        assert created.status_code == 201, created.text
        job_id = created.json()["job_id"]
        done = await wait_for_status(api, job_id, {"completed", "failed"}, timeout=300)
        tail = await api.get(f"/jobs/{job_id}/logs", params={"tail": 1})

    assert done["status"] == "completed", done["error_message"]
    assert done["retry_count"] == 0
    assert tail.status_code == 200 and tail.text == "done\n"
    root = local.checkpoint_root_dir / done["checkpoint_path"].lstrip("/")
    assert (root / "starts").read_text() == "start\n", "the trainer started once"
    [(attempt, log)] = attempt_logs(local.log_dir, job_id, done["latest_run_id"])
    assert attempt == 1
    # The file holds its head and newest part: the bound plus a marker and one line at most.
    assert log.stat().st_size <= MIB + 64 * 1024 + 200
    assert log.read_bytes().endswith(b"done\n")
    assert b"[line split: longer than 65536 bytes]" in log.read_bytes()[:200_000]
    leftovers = docker.from_env().containers.list(
        all=True, filters={"label": f"io.training-orchestrator.job-id={job_id}"}
    )
    assert leftovers == []
