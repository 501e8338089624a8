"""Every example of the API usage guide, run as written against a live server.

The guide (docs/api-usage-guide.md, a copy of the user's contract) is parsed here: each curl
command runs through the real curl binary, each Python example through a real interpreter.
Only the host and port and the guide's placeholder job id are substituted. The compose stack's
end-to-end check (.ci/compose-e2e) runs the same curl examples through `check_curl_example`, with
the API key header that stack requires.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import unique_name

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "api-usage-guide.md"
PLACEHOLDER_ID = "train-a1b2c3d4"
GUIDE_URL = "http://localhost:8000"


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), flags=re.S)


def curl_commands() -> list[str]:
    """Each curl command of the guide, its continuation and quoted lines joined."""
    commands = []
    for block in code_blocks("bash") + code_blocks("yaml"):
        pending: list[str] = []
        for line in block.replace("\\\n", " ").splitlines():
            if not pending and not line.strip().startswith("curl"):
                continue
            pending.append(line.strip())
            try:
                shlex.split(" ".join(pending))
            except ValueError:  # a quote is still open: the command goes on
                continue
            commands.append(" ".join(pending))
            pending = []
    return commands


def documented_responses() -> list[dict[str, Any]]:
    """The response bodies the guide shows that are complete JSON (no `...`)."""
    bodies = []
    for block in code_blocks("bash"):
        _, _, response = block.partition("# Response\n")
        try:
            bodies.append(json.loads(response))
        except json.JSONDecodeError:
            continue
    return bodies


async def new_job(url: str, headers: Mapping[str, str] | None = None) -> str:
    body = {"name": unique_name("guide"), "image": "trainer:1", "command": ["python", "t.py"]}
    async with httpx.AsyncClient(headers=headers) as client:
        response = await client.post(f"{url}/jobs", json={**body, "schedule": "0 2 * * *"})
    assert response.status_code == 201, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def expected_status(command: str) -> int:
    if "-X DELETE" in command:
        return 204
    if "-X POST" in command and re.search(r"/jobs\s", command + " "):
        return 201
    return 200


async def run_curl(command: str, url: str, job_id: str | None) -> tuple[int, Any]:
    command = command.replace(GUIDE_URL, url).replace("${{ secrets.ORCHESTRATOR_URL }}", url)
    command = command.replace("${{ github.sha }}", "0123abcd")
    if job_id is not None:
        command = command.replace(PLACEHOLDER_ID, job_id)
    argv = shlex.split(command) + ["-sS", "-w", "\n%{http_code}"]
    result = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    body, _, status = result.stdout.rpartition("\n")
    return int(status), json.loads(body) if body.strip() else None


def with_api_key(command: str, api_key: str) -> str:
    """The curl command with an ``X-API-Key`` header, for a server that requires a key."""
    return command.replace("curl ", f"curl -H 'X-API-Key: {api_key}' ", 1)


async def check_curl_example(command: str, url: str, api_key: str | None = None) -> None:
    """Run one of the guide's curl commands against ``url``; assert what the guide shows."""
    health_shown, create_shown, stats_shown = documented_responses()
    headers = {"X-API-Key": api_key} if api_key else None
    job_id = await new_job(url, headers) if PLACEHOLDER_ID in command else None
    if api_key:
        command = with_api_key(command, api_key)
    status, body = await run_curl(command, url, job_id)
    assert status == expected_status(command), (command, status, body)
    # Wherever the guide shows a whole body, the real one has every field it shows.
    if command.endswith("/health"):
        assert health_shown.keys() <= body.keys()
    elif command.endswith("/stats"):
        assert stats_shown.keys() <= body.keys()
    elif status == 201:
        assert create_shown.keys() <= body.keys()
        assert body["status"] == "pending"
    elif "/retry" in command:
        assert (body["status"], body["retry_count"], body["error_message"]) == (
            "pending",
            0,
            None,
        )


async def test_every_curl_example_works(live_url: str) -> None:
    commands = curl_commands()
    assert len(commands) == 11, "the guide's curl examples were not all found"
    for command in commands:
        await check_curl_example(command, live_url)


async def test_python_examples_run_as_written(live_url: str) -> None:
    requests_example, httpx_example, monitor = code_blocks("python")
    outputs = []
    for example in (requests_example, httpx_example):
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", example.replace(GUIDE_URL, live_url)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert re.search(r"Created job: train-[0-9a-f]{8}", result.stdout), result.stdout
        outputs.append(result.stdout)
    assert "Job status: pending" in outputs[0]
    assert "Deleted job: True" in outputs[0]
    assert "'total_jobs'" in outputs[1]

    # The monitoring script loops forever: run it until its first report, then stop it.
    process = subprocess.Popen(
        [sys.executable, "-u", "-c", monitor.replace(GUIDE_URL, live_url)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
    finally:
        process.kill()
        process.wait()
    assert re.fullmatch(r"Running: \d+, Failed: \d+\n", first), first
