"""Operators use the `temporal` CLI on the same jobs: search attributes, memo, schedules."""

from __future__ import annotations

import json

import httpx

from core.settings import Settings
from tests.conftest import temporal_cli, unique_name, wait_for_status


async def test_runs_and_schedules_are_found_with_the_cli(
    api: httpx.AsyncClient, settings: Settings, busybox_image: str
) -> None:
    name = unique_name("cli-visible")
    created = await api.post(
        "/jobs", json={"name": name, "image": busybox_image, "command": ["sh", "-c", "echo ok"]}
    )
    job_id = created.json()["job_id"]
    done = await wait_for_status(api, job_id, {"completed"})
    run_id = done["latest_run_id"]

    by_id = temporal_cli(settings, "workflow", "list", "--query", f"JobId='{job_id}'", "-o", "json")
    assert [wf["execution"]["workflowId"] for wf in json.loads(by_id)] == [run_id]
    by_name = temporal_cli(settings, "workflow", "list", "--query", f"JobName='{name}'")
    assert run_id in by_name

    described = json.loads(
        temporal_cli(settings, "workflow", "describe", "--workflow-id", run_id, "-o", "json")
    )
    assert described["workflowExecutionInfo"]["type"]["name"] == "TrainingJobWorkflow"
    memo = json.dumps(described["workflowExecutionInfo"].get("memo", {}))
    assert "job_name" in memo and "image" in memo

    schedules = temporal_cli(settings, "schedule", "list")
    assert job_id in schedules
    schedule = json.loads(
        temporal_cli(settings, "schedule", "describe", "--schedule-id", job_id, "-o", "json")
    )
    assert schedule["schedule"]["action"]["startWorkflow"]["workflowType"]["name"] == (
        "TrainingJobWorkflow"
    )
