"""A trainer killed for exceeding its memory limit: the run says so, and it is a training failure.

Docker reports the kill as exit code 137, the same code as any SIGKILL (a timeout's stop, an
engine's); only ``State.OOMKilled`` tells them apart.
"""

from __future__ import annotations

import asyncio

import docker
import httpx

from core.settings import Settings
from runtimes.base import LABEL_JOB_ID
from tests.conftest import unique_name, wait_for_status

# The shell keeps 200 MB of output in a variable: far past a 64 MB limit. It waits a second
# first, as Docker's OOM watch on a container starts just after the container does.
GREEDY = (
    'echo start >> "$CHECKPOINT_DIR/.starts"; sleep 1; '
    'x=$(head -c 200000000 /dev/zero | tr "\\0" x)'
)


def containers_of(job_id: str) -> list[str]:
    client = docker.from_env()
    try:
        rows = client.api.containers(all=True, filters={"label": f"{LABEL_JOB_ID}={job_id}"})
        return [row["Names"][0].lstrip("/") for row in rows]
    finally:
        client.close()


async def test_an_oom_kill_is_reported_and_counts_as_a_training_failure(
    api: httpx.AsyncClient, settings: Settings, busybox_image: str
) -> None:
    name = unique_name("oom")
    created = await api.post(
        "/jobs",
        json={
            "name": name,
            "image": busybox_image,
            "command": ["sh", "-c", GREEDY],
            "checkpoint_path": f"/checkpoints/{name}",
            "resources": {"memory": "64m"},
            "max_retries": 0,
        },
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["job_id"]
    done = await wait_for_status(api, job_id, {"completed", "failed"}, timeout=120)
    runs = (await api.get(f"/jobs/{job_id}/runs")).json()["runs"]
    starts = settings.checkpoint_root_dir / "checkpoints" / name / ".starts"

    assert done["status"] == "failed", done
    assert done["retry_count"] == 0
    assert "killed: out of memory, limit 64m" in done["error_message"], done["error_message"]
    assert [a["exit_code"] for a in runs[0]["attempts"]] == [137]
    assert starts.read_text().count("start") == 1
    assert await asyncio.to_thread(containers_of, job_id) == []
