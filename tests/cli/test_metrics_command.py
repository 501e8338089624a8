"""``orchestrator metrics JOB_ID``: the latest run's curves as sparklines, as a user sees them."""

from __future__ import annotations

import json

import httpx

from cli.curves import BLOCKS, sparkline
from tests.api.test_run_metrics import run_trainer
from tests.cli.test_cli import orchestrator
from tests.conftest import unique_name


async def test_metrics_prints_the_latest_runs_curves(
    live_url: str, api: httpx.AsyncClient, busybox_image: str
) -> None:
    job = await run_trainer(api, busybox_image, 25)
    job_id, run_id = job["job_id"], job["latest_run_id"]

    shown = await orchestrator("metrics", job_id, url=live_url, env={"COLUMNS": "160"})
    assert shown.returncode == 0, shown.stderr
    lines = {line.split("│")[1].strip(): line for line in shown.stdout.splitlines() if "│" in line}
    assert run_id in shown.stdout
    loss = lines["loss"]
    # 1000 / step falls steeply, then flattens: the curve starts at the top, ends at the bottom.
    curve = loss.split("│")[2].strip()
    assert len(curve) == 25 and set(curve) <= set(BLOCKS)
    assert curve[0] == BLOCKS[-1] and curve[-1] == BLOCKS[0]
    assert "1000" in loss and "40" in loss and "1–25 (25 points)" in loss
    assert sparkline([4.0 * step for step in range(1, 26)], 40) in lines["acc"]

    narrow = await orchestrator("metrics", job_id, "--width", "10", url=live_url)
    assert narrow.returncode == 0, narrow.stderr
    assert any(
        len(part.strip()) == 10 and set(part.strip()) <= set(BLOCKS)
        for part in narrow.stdout.split("│")
    )

    as_json = await orchestrator("metrics", job_id, "--run", run_id, "--json", url=live_url)
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert [entry["name"] for entry in body["series"]] == ["acc", "loss"]

    missing = await orchestrator("metrics", "train-00000000", url=live_url)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: 404 JobNotFound")


async def test_metrics_of_a_job_that_never_ran(live_url: str, api: httpx.AsyncClient) -> None:
    body = {
        "name": unique_name("idle"),
        "image": "t:1",
        "command": ["true"],
        "schedule": "0 2 * * *",
    }
    job = (await api.post("/jobs", json=body)).json()
    shown = await orchestrator("metrics", job["job_id"], url=live_url)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"Job {job['job_id']} has not run yet."
    await api.delete(f"/jobs/{job['job_id']}")


def test_sparkline_scales_and_resamples() -> None:
    assert sparkline([], 10) == ""
    assert sparkline([3.0, 3.0], 10) == BLOCKS[4] * 2
    assert sparkline([0.0, 7.0], 10) == BLOCKS[0] + BLOCKS[-1]
    long = sparkline([float(i) for i in range(1000)], 20)
    assert len(long) == 20 and long[0] == BLOCKS[0] and long[-1] == BLOCKS[-1]
