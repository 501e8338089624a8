"""Training runs as a person watches them: progress, checkpoints, logs, cancel, limits."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from typing import Any

import docker
import httpx
import pytest
from sqlalchemy import text
from temporalio.client import Client

from core.settings import Settings
from runtimes.base import ContainerSpec, unit_name
from runtimes.docker_options import create_kwargs
from store.db import create_engine
from tests.conftest import eventually, unique_name, wait_for_status


async def create(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await api.post("/jobs", json={"name": unique_name(), **fields})
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


async def test_progress_is_visible_while_running_and_after(
    api: httpx.AsyncClient, temporal_client: Client, busybox_image: str
) -> None:
    script = (
        'for i in 1 2 3 4 5 6; do echo "PROGRESS {\\"step\\": $i, \\"total\\": 6, '
        '\\"epoch\\": 1, \\"metrics\\": {\\"loss\\": 0.$i}}"; sleep 0.5; done; '
        "echo 'PROGRESS {not json'"
    )
    job = await create(api, image=busybox_image, command=sh(script))

    async def midway() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/jobs/{job['job_id']}")).json()
        progress = body["progress"]
        if body["status"] == "running" and progress and 2 <= progress["step"] < 6:
            return body
        return None

    running = await eventually(midway, timeout=30, interval=0.1)
    progress = running["progress"]
    assert progress["total"] == 6
    assert progress["percent"] == pytest.approx(100 * progress["step"] / 6, abs=0.01)
    assert progress["metrics"]["loss"] == pytest.approx(progress["step"] / 10)

    # The same progress is in the activity's heartbeat, readable in the Temporal UI.
    handle = temporal_client.get_workflow_handle(running["latest_run_id"])
    description = await handle.describe()
    details = [a.heartbeat_details for a in description.raw_description.pending_activities]
    assert details and "progress" in details[0].payloads[0].data.decode()

    done = await wait_for_status(api, job["job_id"], {"completed", "failed"})
    assert done["status"] == "completed"
    assert done["progress"]["step"] == 6 and done["progress"]["percent"] == 100.0
    listed = (await api.get("/jobs", params={"page_size": 200})).json()["jobs"]
    assert next(j for j in listed if j["job_id"] == job["job_id"])["progress"]["step"] == 6


async def test_checkpoints_are_recorded_and_a_retry_resumes_from_the_latest(
    api: httpx.AsyncClient, busybox_image: str, settings: Settings
) -> None:
    script = (
        'if [ "$ATTEMPT" = 1 ]; then '
        "echo weights-5 > $CHECKPOINT_DIR/ckpt-5.bin; "
        'echo "CHECKPOINT {\\"path\\": \\"ckpt-5.bin\\", \\"step\\": 5}"; '
        "echo unannounced > $CHECKPOINT_DIR/ckpt-3.bin; "
        "echo crash; exit 2; fi; "
        'echo "resuming from $RESUME_FROM"; cat "$RESUME_FROM"'
    )
    job = await create(
        api,
        image=busybox_image,
        command=sh(script),
        max_retries=1,
        checkpoint_path="/checkpoints/resume-test",
    )
    done = await wait_for_status(api, job["job_id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    assert done["retry_count"] == 1

    listing = (await api.get(f"/jobs/{job['job_id']}/checkpoints")).json()
    by_path = {c["path"]: c for c in listing["checkpoints"]}
    assert set(by_path) == {"ckpt-5.bin", "ckpt-3.bin"}
    assert by_path["ckpt-5.bin"]["step"] == 5 and by_path["ckpt-5.bin"]["size_bytes"] == 10
    assert by_path["ckpt-3.bin"]["step"] == 3  # found by the scan, step from the name
    assert len(by_path["ckpt-5.bin"]["sha256"]) == 64
    assert listing["latest"]["path"] == "ckpt-5.bin"
    host_file = settings.checkpoint_root_dir / "checkpoints/resume-test/ckpt-5.bin"
    assert host_file.read_text() == "weights-5\n"

    logs = (await api.get(f"/jobs/{job['job_id']}/logs")).text
    assert "--- attempt 1 ---" in logs and "crash" in logs
    assert "resuming from /checkpoints/resume-test/ckpt-5.bin\nweights-5" in logs


async def test_unannounced_checkpoints_are_recorded_while_the_trainer_runs(
    api: httpx.AsyncClient, busybox_image: str, settings: Settings
) -> None:
    script = (
        "echo first > $CHECKPOINT_DIR/epoch-7.bin; "
        "echo -n growing > $CHECKPOINT_DIR/epoch-8.bin; "
        "while [ ! -e $CHECKPOINT_DIR/.stop ]; do echo -n . >> $CHECKPOINT_DIR/epoch-8.bin; "
        "sleep 0.1; done; echo done"
    )
    job = await create(api, image=busybox_image, command=sh(script))
    job_id = job["job_id"]

    async def listed_while_running() -> dict[str, Any] | None:
        listing = (await api.get(f"/jobs/{job_id}/checkpoints")).json()
        paths = {c["path"] for c in listing["checkpoints"]}
        status = (await api.get(f"/jobs/{job_id}")).json()["status"]
        assert status in ("pending", "running"), status
        return listing if "epoch-7.bin" in paths else None

    listing = await eventually(listed_while_running, timeout=30)
    by_path = {c["path"]: c for c in listing["checkpoints"]}
    assert by_path["epoch-7.bin"]["step"] == 7
    assert by_path["epoch-7.bin"]["size_bytes"] == 6
    assert "epoch-8.bin" not in by_path, "a file still growing is not a checkpoint yet"

    checkpoint_dir = settings.checkpoint_root_dir / job["checkpoint_path"].lstrip("/")
    (checkpoint_dir / ".stop").write_text("")
    done = await wait_for_status(api, job_id, {"completed", "failed"})
    assert done["status"] == "completed"
    final = {
        c["path"] for c in (await api.get(f"/jobs/{job_id}/checkpoints")).json()["checkpoints"]
    }
    assert "epoch-8.bin" in final, "the attempt's end records what is left"


async def test_logs_tail_and_follow_include_a_failed_attempt(
    api: httpx.AsyncClient, busybox_image: str
) -> None:
    script = (
        'for i in 1 2 3 4 5; do echo "attempt $ATTEMPT line $i"; sleep 0.3; done; '
        '[ "$ATTEMPT" = 2 ] || exit 4'
    )
    job = await create(api, image=busybox_image, command=sh(script), max_retries=1)
    await wait_for_status(api, job["job_id"], {"running"})

    streamed = b""
    async with api.stream("GET", f"/jobs/{job['job_id']}/logs", params={"follow": True}) as r:
        assert r.status_code == 200
        async for chunk in r.aiter_bytes():
            streamed += chunk
    text_streamed = streamed.decode()
    for attempt in (1, 2):
        for line in range(1, 6):
            assert f"attempt {attempt} line {line}" in text_streamed
    done = await wait_for_status(api, job["job_id"], {"completed", "failed"})
    assert done["status"] == "completed"

    tail = (await api.get(f"/jobs/{job['job_id']}/logs", params={"tail": 2})).text
    assert tail.splitlines() == ["attempt 2 line 4", "attempt 2 line 5"]
    whole = (await api.get(f"/jobs/{job['job_id']}/logs")).text
    assert "attempt 1 line 5" in whole  # the failed attempt's output is kept
    assert (await api.get("/jobs/train-00000000/logs")).status_code == 404


async def test_cancel_stops_the_run_and_keeps_the_schedule(
    api: httpx.AsyncClient, busybox_image: str, temporal_client: Client
) -> None:
    script = "trap 'echo got-sigterm; exit 143' TERM; while true; do sleep 0.1; done"
    job = await create(api, image=busybox_image, command=sh(script), schedule="0 2 * * *")
    nothing = await api.post(f"/jobs/{job['job_id']}/cancel")
    assert nothing.status_code == 409
    assert nothing.json()["error_type"] == "JobNotRunning"

    await api.post(f"/jobs/{job['job_id']}/retry")  # start a run now
    await wait_for_status(api, job["job_id"], {"running"})
    await asyncio.sleep(1)
    response = await api.post(f"/jobs/{job['job_id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    logs = (await api.get(f"/jobs/{job['job_id']}/logs")).text
    assert "got-sigterm" in logs, "the trainer is stopped with SIGTERM first"
    description = await temporal_client.get_schedule_handle(job["job_id"]).describe()
    assert description.info.next_action_times, "a scheduled job keeps its schedule"
    assert (await api.get("/stats")).json()["cancelled"] >= 1


async def test_timeout_stops_the_attempt_and_counts_as_a_training_failure(
    api: httpx.AsyncClient, busybox_image: str
) -> None:
    job = await create(
        api, image=busybox_image, command=sh("sleep 30"), timeout_seconds=1, max_retries=1
    )
    done = await wait_for_status(api, job["job_id"], {"completed", "failed"}, timeout=60)
    assert done["status"] == "failed"
    assert done["retry_count"] == 1
    assert "timed out" in done["error_message"]


async def test_env_reaches_the_trainer_and_secrets_stay_out_of_history(
    api: httpx.AsyncClient, busybox_image: str, temporal_client: Client, settings: Settings
) -> None:
    os.environ["ORCH_TEST_SECRET"] = "hunter2-very-secret"
    job = await create(
        api,
        image=busybox_image,
        command=sh('echo "lr=$LEARNING_RATE"; printf %s "$WANDB_KEY" | sha256sum'),
        env={"LEARNING_RATE": "0.01"},
        secret_env=["WANDB_KEY"],
    )
    assert job["secret_env"] == ["WANDB_KEY"]
    # The worker resolves WANDB_KEY from its own environment variable of the same name.
    os.environ["WANDB_KEY"] = os.environ.pop("ORCH_TEST_SECRET")
    try:
        done = await wait_for_status(api, job["job_id"], {"completed", "failed"})
    finally:
        os.environ.pop("WANDB_KEY", None)
    assert done["status"] == "completed", done
    logs = (await api.get(f"/jobs/{job['job_id']}/logs")).text
    assert "lr=0.01" in logs
    assert hashlib.sha256(b"hunter2-very-secret").hexdigest() in logs

    history = await temporal_client.get_workflow_handle(done["latest_run_id"]).fetch_history()
    assert "hunter2" not in history.to_json()
    assert "hunter2" not in json.dumps(done)
    engine = create_engine(settings.sqlalchemy_url)
    async with engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM jobs, runs"))).all()
    await engine.dispose()
    assert "hunter2" not in repr(rows)


async def test_missing_secret_fails_the_run_at_once(
    api: httpx.AsyncClient, busybox_image: str
) -> None:
    job = await create(
        api, image=busybox_image, command=["true"], secret_env=["NOT_SET_ANYWHERE_X"]
    )
    done = await wait_for_status(api, job["job_id"], {"completed", "failed"})
    assert done["status"] == "failed" and done["retry_count"] == 0
    assert "NOT_SET_ANYWHERE_X" in done["error_message"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"env": {"JOB_ID": "x"}}, "env"),
        ({"env": {"bad name": "x"}}, "env"),
        ({"secret_env": ["RESUME_FROM"]}, "secret_env"),
        ({"resources": {"gpus": -1}}, "resources.gpus"),
        ({"resources": {"gpus": "some"}}, "resources.gpus"),
        ({"resources": {"memory": "lots"}}, "resources.memory"),
        ({"resources": {"cpus": 0}}, "resources.cpus"),
        ({"resources": {"tpus": 1}}, "resources.tpus"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"resume_policy": "sometimes"}, "resume_policy"),
    ],
)
async def test_invalid_run_settings_are_400(
    api: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    body = {"name": unique_name(), "image": "x:1", "command": ["train"], **change}
    response = await api.post("/jobs", json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]


def test_resources_become_docker_device_requests_and_limits(busybox_image: str) -> None:
    """This machine has no GPU runtime: create the container without starting it, inspect."""
    spec = ContainerSpec(
        name=unit_name("train-gpu00000", "run-gpu", 1),
        job_id="train-gpu00000",
        run_id="run-gpu",
        attempt=1,
        image=busybox_image,
        command=["true"],
        resources={"gpus": 2, "cpus": 1.5, "memory": "256m"},
    )
    client = docker.from_env()
    container = client.containers.create(**create_kwargs(spec, "none", None))
    try:
        host = client.api.inspect_container(container.id)["HostConfig"]
    finally:
        container.remove(force=True)
        client.close()
    assert host["DeviceRequests"][0]["Count"] == 2
    assert host["DeviceRequests"][0]["Capabilities"] == [["gpu"]]
    assert host["NanoCpus"] == 1_500_000_000
    assert host["Memory"] == 256 * 1024 * 1024
    assert host["Privileged"] is False
    assert host["NetworkMode"] == "none"

    all_gpus = create_kwargs(
        ContainerSpec(**{**spec.__dict__, "resources": {"gpus": "all"}}), "none", None
    )
    assert all_gpus["device_requests"][0]["Count"] == -1
