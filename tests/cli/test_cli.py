"""The ``orchestrator`` console script, run as a user runs it, against a live API and worker.

Every command goes through the installed script in a subprocess; the assertions are on what
a user sees: stdout, stderr and the exit code.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from core.settings import Settings
from tests.cli.conftest import API_KEY
from tests.conftest import free_port, unique_name

ORCHESTRATOR = str(Path(sys.executable).parent / "orchestrator")

# Five PROGRESS reports, a line before and one after: what `watch` and `logs` must show.
TRAINER_SCRIPT = (
    'echo "hello from the trainer"; '
    "for i in 1 2 3 4 5; do "
    'echo "PROGRESS {\\"step\\": $i, \\"total\\": 5, \\"metrics\\": {\\"loss\\": 0.$i}}"; '
    "sleep 0.3; done; "
    'echo "training done"'
)


async def orchestrator(
    *args: str, url: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the console script; in a thread, because the live server shares this event loop.

    It runs in ``cwd``, or in an empty directory: a developer's own ``.env`` must not count.
    """
    # The developer's own ORCHESTRATOR_* settings must not leak into the tests.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    environ.update(env or {})
    argv = [ORCHESTRATOR, *(["--url", url] if url else []), *args]
    with tempfile.TemporaryDirectory() as empty:
        return await asyncio.to_thread(
            subprocess.run,
            argv,
            capture_output=True,
            text=True,
            env=environ,
            cwd=cwd or empty,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )


async def get_json(url: str, job_id: str) -> dict[str, Any]:
    result = await orchestrator("jobs", "get", job_id, "--json", url=url)
    assert result.returncode == 0, result.stderr
    job: dict[str, Any] = json.loads(result.stdout)
    return job


async def wait_until(url: str, job_id: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = await get_json(url, job_id)
        if job["status"] == status:
            return job
        assert asyncio.get_running_loop().time() < deadline, f"still {job['status']}"
        await asyncio.sleep(0.3)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failing command writes to stderr."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


async def test_scheduled_job_create_list_get_update_delete(live_url: str) -> None:
    name = unique_name("cli-scheduled")
    created = await orchestrator(
        "jobs", "create", "--name", name, "--image", "trainer:1",
        "--schedule", "0 3 1 1 *", "--max-retries", "2", "--env", "LR=0.1", "--env", "EPOCHS=3",
        "--cpus", "2", "--memory", "1g", "--timeout", "600", "--resume-policy", "never",
        "--checkpoint-path", "/checkpoints/cli-test", "--json",
        "--", "python", "train.py", "--epochs", "3",
        url=live_url,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    job = json.loads(created.stdout)
    job_id = job["job_id"]
    assert job["command"] == ["python", "train.py", "--epochs", "3"]
    assert job["schedule"] == "0 3 1 1 *"
    assert job["env"] == {"LR": "0.1", "EPOCHS": "3"}
    assert job["resources"] == {"gpus": None, "cpus": 2.0, "memory": "1g"}
    assert (job["max_retries"], job["timeout_seconds"], job["resume_policy"]) == (2, 600, "never")
    assert job["checkpoint_path"] == "/checkpoints/cli-test"

    listed = await orchestrator("jobs", "list", url=live_url)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if job_id in line)
    for cell in (name, "pending", "0 3 1 1 *", "0/2"):
        assert cell in row, row
    pending = await orchestrator("jobs", "list", "--status", "pending", "--json", url=live_url)
    assert job_id in {j["job_id"] for j in json.loads(pending.stdout)["jobs"]}

    shown = await orchestrator("jobs", "get", job_id, url=live_url)
    assert shown.returncode == 0, shown.stderr
    for text in (name, "python train.py --epochs 3", "LR=0.1 EPOCHS=3", "0 3 1 1 *", "0 of 2"):
        assert text in shown.stdout, shown.stdout
    fetched = await get_json(live_url, job_id)
    assert {k: fetched[k] for k in ("name", "image", "status")} == {
        "name": name,
        "image": "trainer:1",
        "status": "pending",
    }

    # A resource option changes that limit only; the others are kept.
    updated = await orchestrator(
        "jobs", "update", job_id, "--schedule", "30 4 1 1 *", "--gpus", "1", "--json", url=live_url
    )
    assert updated.returncode == 0, updated.stderr
    body = json.loads(updated.stdout)
    assert body["schedule"] == "30 4 1 1 *"
    assert body["resources"] == {"gpus": 1, "cpus": 2.0, "memory": "1g"}
    cleared = await orchestrator("jobs", "update", job_id, "--schedule", "none", url=live_url)
    assert cleared.returncode == 0, cleared.stderr
    assert f"Updated job {job_id}" in cleared.stdout
    assert (await get_json(live_url, job_id))["schedule"] is None

    # Without --yes and nobody to answer the prompt, nothing is deleted.
    refused = await orchestrator("jobs", "delete", job_id, url=live_url)
    assert refused.returncode != 0
    assert (await get_json(live_url, job_id))["job_id"] == job_id
    deleted = await orchestrator("jobs", "delete", job_id, "--yes", url=live_url)
    assert deleted.returncode == 0, deleted.stderr
    assert f"Deleted job {job_id}" in deleted.stdout
    gone = await orchestrator("jobs", "get", job_id, url=live_url)
    assert error_line(gone) == f"error: 404 JobNotFound: Job {job_id} not found"


async def test_one_off_job_watch_logs_and_retry(
    live_url: str, busybox_image: str, tmp_path: Path
) -> None:
    spec = tmp_path / "job.json"
    spec.write_text(
        json.dumps(
            {
                "name": unique_name("cli-progress"),
                "image": busybox_image,
                "command": ["sh", "-c", TRAINER_SCRIPT],
                "max_retries": 0,
            }
        )
    )
    created = await orchestrator("jobs", "create", "--file", str(spec), url=live_url)
    assert created.returncode == 0, created.stderr
    assert "it runs once, now" in created.stdout
    job_id = created.stdout.split()[2]
    assert job_id.startswith("train-"), created.stdout

    # Both start while the job may still be pending: follow waits for the run to start.
    watched, followed = await asyncio.gather(
        orchestrator("jobs", "watch", job_id, "--interval", "0.3", url=live_url),
        orchestrator("jobs", "logs", job_id, "--follow", url=live_url),
    )
    assert watched.returncode == 0, (watched.stdout, watched.stderr)
    assert "5/5" in watched.stdout and "100%" in watched.stdout, watched.stdout
    assert "loss=0.5" in watched.stdout
    assert f"Job {job_id} completed." in watched.stdout
    assert followed.returncode == 0, followed.stderr
    for line in ("hello from the trainer", 'PROGRESS {"step": 5, "total": 5', "training done"):
        assert line in followed.stdout, followed.stdout

    tail = await orchestrator("jobs", "logs", job_id, "--tail", "2", url=live_url)
    assert tail.returncode == 0, tail.stderr
    assert tail.stdout.startswith('PROGRESS {"step": 5') and "training done" in tail.stdout
    assert "hello from the trainer" not in tail.stdout
    first_run = (await get_json(live_url, job_id))["latest_run_id"]

    retried = await orchestrator("jobs", "retry", job_id, url=live_url)
    assert retried.returncode == 0, retried.stderr
    assert f"Retrying job {job_id}" in retried.stdout
    again = await orchestrator("jobs", "watch", job_id, "--interval", "0.3", url=live_url)
    assert again.returncode == 0, (again.stdout, again.stderr)
    job = await get_json(live_url, job_id)
    assert job["status"] == "completed" and job["latest_run_id"] != first_run


async def test_cancel_a_running_job(live_url: str, busybox_image: str) -> None:
    name = unique_name("cli-long")
    created = await orchestrator(
        "jobs", "create", "--name", name, "--image", busybox_image, "--max-retries", "0",
        "--json", "--", "sh", "-c", "echo started; sleep 300",
        url=live_url,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    job_id = json.loads(created.stdout)["job_id"]
    await wait_until(live_url, job_id, "running")

    cancelled = await orchestrator("jobs", "cancel", job_id, url=live_url)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"Job {job_id} is cancelled." in cancelled.stdout
    assert (await get_json(live_url, job_id))["status"] == "cancelled"

    watched = await orchestrator("jobs", "watch", job_id, url=live_url)
    assert watched.returncode == 1
    assert f"Job {job_id} cancelled" in watched.stdout
    again = await orchestrator("jobs", "cancel", job_id, url=live_url)
    assert error_line(again).startswith("error: 409 JobNotRunning: ")


async def test_api_errors_and_usage_errors(live_url: str) -> None:
    invalid = await orchestrator(
        "jobs", "create", "--name", unique_name("cli"), "--image", "trainer:1",
        "--max-retries", "1000", "--", "python", "t.py",
        url=live_url,
    )  # fmt: skip
    assert error_line(invalid).startswith("error: 400 ValidationError: max_retries: ")

    missing = await orchestrator("jobs", "create", "--name", "x", "--", "a", url=live_url)
    assert missing.returncode == 2 and "--image" in missing.stderr
    bad_env = await orchestrator(
        "jobs", "create", "--name", "x", "--image", "y", "--env", "NOEQUALS", "--", "a"
    )
    assert bad_env.returncode == 2 and "KEY=VALUE" in bad_env.stderr


async def test_api_key_from_option_or_environment(auth_url: str) -> None:
    denied = await orchestrator("jobs", "list", url=auth_url)
    assert error_line(denied).startswith("error: 401 AuthenticationError: ")
    wrong = await orchestrator("--api-key", "wrong-key-123", "jobs", "list", url=auth_url)
    assert "AuthenticationError" in error_line(wrong)
    assert "wrong-key-123" not in wrong.stdout + wrong.stderr

    allowed = await orchestrator("--api-key", API_KEY, "jobs", "list", "--json", url=auth_url)
    assert allowed.returncode == 0, allowed.stderr
    assert "jobs" in json.loads(allowed.stdout)
    from_env = await orchestrator(
        "jobs", "list", url=auth_url, env={"ORCHESTRATOR_API_KEY": API_KEY}
    )
    assert from_env.returncode == 0, from_env.stderr
    # --help names the variable but never shows its value.
    helped = await orchestrator("--help", env={"ORCHESTRATOR_API_KEY": "secret-in-env-42"})
    assert "ORCHESTRATOR_API_KEY" in helped.stdout and "secret-in-env-42" not in helped.stdout


async def test_unreachable_api_is_one_error_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there any more
    for command in (["jobs", "list"], ["jobs", "watch", "train-00000000"]):
        result = await orchestrator(*command, env={"ORCHESTRATOR_URL": url})
        assert error_line(result) == f"error: cannot reach the API at {url}"


async def test_workers_lists_this_deployments_workers(live_url: str, settings: Settings) -> None:
    listed = await orchestrator("workers", "--json", url=live_url)
    assert listed.returncode == 0, listed.stderr
    workers = json.loads(listed.stdout)["workers"]
    # Other tests' worker processes may have registered in this deployment too.
    ours = [w for w in workers if w["task_queue"] == settings.worker_task_queue]
    assert len(ours) == 1 and ours[0]["alive"] and ours[0]["name"] == settings.worker_name
    assert ours[0]["cpus"] > 0 and ours[0]["memory_bytes"] > 0

    table = await orchestrator("workers", url=live_url)
    assert table.returncode == 0, table.stderr
    assert settings.worker_name in table.stdout and "alive" in table.stdout
