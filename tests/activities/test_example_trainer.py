"""The example trainer under the local-process runtime: a killed run resumes, not restarts."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

from temporalio.client import Client

from core.settings import Settings
from runtimes.base import unit_name
from runtimes.process import ProcessRuntime
from tests.conftest import api_client, eventually, unique_name, wait_for_status
from worker import build_worker

TRAINER = Path(__file__).resolve().parents[2] / "examples" / "trainer" / "train.py"


async def test_killed_trainer_resumes_from_its_last_checkpoint(
    settings: Settings, temporal_client: Client
) -> None:
    local = settings.model_copy(update={"task_queue": "tests-process", "runtime": "process"})
    state_dir = local.data_dir / "process-runtime"
    async with build_worker(local, temporal_client, ProcessRuntime(state_dir)) as worker, worker:
        async with api_client(local) as api:
            created = await api.post(
                "/jobs",
                json={
                    "name": unique_name("example"),
                    "image": "unused-by-the-process-runtime",
                    "command": [sys.executable, str(TRAINER)],
                    "env": {"TOTAL_STEPS": "60", "CHECKPOINT_EVERY": "5", "STEP_SECONDS": "0.1"},
                    "max_retries": 1,
                },
            )
            assert created.status_code == 201, created.text
            job_id = created.json()["job_id"]

            async def past_step_12() -> dict | None:
                body = (await api.get(f"/jobs/{job_id}")).json()
                progress = body["progress"]
                return body if progress and progress["step"] >= 12 else None

            running = await eventually(past_step_12, timeout=60, interval=0.1)
            pid_file = state_dir / unit_name(job_id, running["latest_run_id"], 1) / "pid"
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)  # the trainer crashes

            done = await wait_for_status(api, job_id, {"completed", "failed"}, timeout=90)
            logs = (await api.get(f"/jobs/{job_id}/logs")).text
            checkpoints = (await api.get(f"/jobs/{job_id}/checkpoints")).json()

    assert done["status"] == "completed", done
    assert done["retry_count"] == 1
    assert done["progress"]["step"] == 60
    second = logs.split("--- attempt 2 ---", 1)[1]
    resumed = re.search(r"resumed from step (\d+) \((.+)\)", second)
    assert resumed, second[:500]
    step = int(resumed.group(1))
    assert step >= 10 and step % 5 == 0
    assert resumed.group(2).endswith(f"ckpt-{step:06d}.json")
    assert f"starts at step {step + 1}" in second
    first_progress = re.search(r'PROGRESS \{"step": (\d+)', second)
    assert first_progress and int(first_progress.group(1)) == step + 1, "not restarted at 0"
    assert checkpoints["latest"]["step"] == 60
