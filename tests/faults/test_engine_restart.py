"""A Docker engine restarted under a training run costs no retry and resumes the checkpoint.

The engine is a second ``dockerd`` owned by this test (see ``second_engine.py``), started with
``--live-restore=false``: stopping it kills its containers, as a package upgrade or a host
restart does, and so does its crash (it kills them when it starts again). The attempt must go
on in a new container (the next incarnation of the attempt's unit) that resumes from the
checkpoint written before the restart.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
from temporalio.client import Client

from core.settings import Settings
from runtimes.base import LABEL_JOB_ID
from tests.conftest import api_client, eventually, unique_name, wait_for_status
from tests.faults.second_engine import SecondEngine
from worker import build_worker

# Each start is logged with what it resumes from; the resumed trainer finishes at once.
TRAINER = """
echo "start ${RESUME_FROM:--}" >> "$CHECKPOINT_DIR/.starts"
if [ -n "$RESUME_FROM" ]; then echo "resumed from $(cat "$RESUME_FROM")"; exit 0; fi
cd "$CHECKPOINT_DIR" && echo step-1 > ckpt-1.tmp && mv ckpt-1.tmp ckpt-1
echo 'CHECKPOINT {"path": "ckpt-1", "step": 1}'
trap 'exit 143' TERM
sleep 600 & wait
"""


def containers_on(engine: SecondEngine, job_id: str) -> list[str]:
    client = engine.client()
    try:
        rows = client.api.containers(all=True, filters={"label": f"{LABEL_JOB_ID}={job_id}"})
        return [row["Names"][0].lstrip("/") for row in rows]
    finally:
        client.close()


@pytest.mark.parametrize(
    "how", [signal.SIGTERM, signal.SIGKILL], ids=["engine-stopped", "engine-crashed"]
)
async def test_an_engine_restart_resumes_the_attempt_in_a_new_container(
    settings: Settings, temporal_client: Client, busybox_image: str, how: signal.Signals
) -> None:
    engine = SecondEngine()
    name = unique_name("engine-restart")
    checkpoint_path = f"/checkpoints/{name}"
    starts = settings.checkpoint_root_dir / checkpoint_path.lstrip("/") / ".starts"
    try:
        await asyncio.to_thread(engine.start)
        await asyncio.to_thread(engine.load_image, busybox_image)
        local = settings.model_copy(
            update={"task_queue": "tests-engine-restart", "docker_host": engine.url}
        )
        async with build_worker(local, temporal_client) as worker, worker:
            async with api_client(local) as api:
                created = await api.post(
                    "/jobs",
                    json={
                        "name": name,
                        "image": busybox_image,
                        "command": ["sh", "-c", TRAINER],
                        "checkpoint_path": checkpoint_path,
                        "max_retries": 0,
                    },
                )
                assert created.status_code == 201, created.text
                job_id = created.json()["job_id"]

                async def checkpoint_recorded() -> bool:
                    listing = (await api.get(f"/jobs/{job_id}/checkpoints")).json()
                    return any(c["path"] == "ckpt-1" for c in listing["checkpoints"])

                await eventually(checkpoint_recorded, timeout=120)
                await asyncio.sleep(1.0)  # the activity is in its wait loop

                await asyncio.to_thread(engine.stop, how)
                await asyncio.to_thread(engine.start)

                done = await wait_for_status(
                    api, job_id, {"completed", "failed", "cancelled"}, timeout=240
                )
                runs: dict[str, Any] = (await api.get(f"/jobs/{job_id}/runs")).json()
                logs = (await api.get(f"/jobs/{job_id}/logs")).text
                leftovers = await asyncio.to_thread(containers_on, engine, job_id)
    finally:
        await asyncio.to_thread(engine.cleanup)

    assert done["status"] == "completed", done
    assert done["retry_count"] == 0, "an engine restart must not consume a training retry"
    # Once per incarnation of the attempt's unit: the second resumed the first's checkpoint.
    assert starts.read_text().splitlines() == ["start -", f"start {checkpoint_path}/ckpt-1"]
    [run] = runs["runs"]
    assert [(a["attempt"], a["exit_code"]) for a in run["attempts"]] == [(1, 0)]
    assert "resumed from step-1" in logs
    assert "engine restarted" in logs
    assert leftovers == [], f"containers left behind: {leftovers}"
