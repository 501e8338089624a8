"""``GET /jobs/{job_id}/runs/{run_id}/metrics`` for runs of the real worker, the name filter of
``GET /jobs``, and the history going with its job."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from core.settings import Settings
from store.db import create_engine
from store.models import MetricHistory, MetricPoint
from tests.conftest import eventually, unique_name, wait_for_status


def progress_trainer(steps: int, pause: float = 0.05, scale: int = 1000) -> list[str]:
    """A busybox trainer that reports ``steps`` steps of ``loss`` (scale / step) and ``acc``."""
    report = (
        '{\\"step\\": $i, \\"total\\": TOTAL, '
        '\\"metrics\\": {\\"loss\\": $((SCALE / i)), \\"acc\\": $((i * 4))}}'
    )
    report = report.replace("TOTAL", str(steps)).replace("SCALE", str(scale))
    line = 'echo "PROGRESS ' + report + '"'
    loop = f"i=1; while [ $i -le {steps} ]; do {line}; i=$((i + 1)); sleep {pause}; done"
    return ["sh", "-c", f'echo "starting"; {loop}; echo "trained"']


async def run_trainer(
    api: httpx.AsyncClient,
    image: str,
    steps: int,
    *,
    name: str | None = None,
    schedule: str | None = None,
) -> dict[str, Any]:
    """Create a job with the trainer, run it now (triggered, if it has a schedule) and wait
    until its run completed."""
    body = {"name": name or unique_name("curves"), "image": image}
    body |= {"command": progress_trainer(steps), "schedule": schedule}
    created = await api.post("/jobs", json=body)
    assert created.status_code == 201, created.text
    job_id = created.json()["job_id"]
    if schedule is not None:
        assert (await api.post(f"/jobs/{job_id}/trigger")).status_code == 200
    job = await wait_for_status(api, job_id, {"completed", "failed"})
    assert job["status"] == "completed", job
    return job


async def stored_points(settings: Settings, run_id: str) -> tuple[int, int]:
    engine = create_engine(settings.sqlalchemy_url)
    try:
        async with engine.connect() as connection:
            points = await connection.scalar(
                select(func.count()).select_from(MetricPoint).where(MetricPoint.run_id == run_id)
            )
            histories = await connection.scalar(
                select(func.count())
                .select_from(MetricHistory)
                .where(MetricHistory.run_id == run_id)
            )
    finally:
        await engine.dispose()
    return int(points or 0), int(histories or 0)


async def test_a_runs_metrics_are_its_reports_by_step_until_the_job_is_deleted(
    api: httpx.AsyncClient, busybox_image: str, settings: Settings
) -> None:
    job = await run_trainer(api, busybox_image, 25)
    job_id, run_id = job["job_id"], job["latest_run_id"]

    response = await api.get(f"/jobs/{job_id}/runs/{run_id}/metrics")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["job_id"], body["run_id"]) == (job_id, run_id)
    assert body["ignored_values"] == 0
    assert (body["max_points_per_metric"], body["max_metrics"]) == (2000, 50)
    series = {entry["name"]: entry for entry in body["series"]}
    assert sorted(series) == ["acc", "loss"]
    loss = series["loss"]
    assert loss["steps"] == list(range(1, 26))
    assert loss["values"] == [float(1000 // step) for step in range(1, 26)]
    assert len(loss["times"]) == 25 and loss["times"] == sorted(loss["times"])
    assert series["acc"]["values"][-1] == 100.0
    # The latest report is still the job's progress.
    assert job["progress"]["step"] == 25 and job["progress"]["metrics"]["loss"] == 40.0
    assert await stored_points(settings, run_id) == (50, 1)

    unknown = await api.get(f"/jobs/{job_id}/runs/{job_id}-no-such-run/metrics")
    assert unknown.status_code == 404
    assert unknown.json()["error_type"] == "RunNotFound"
    assert (await api.get(f"/jobs/train-00000000/runs/{run_id}/metrics")).status_code == 404

    assert (await api.delete(f"/jobs/{job_id}")).status_code == 204
    gone = await api.get(f"/jobs/{job_id}/runs/{run_id}/metrics")
    assert gone.status_code == 404
    assert gone.json()["error_type"] == "JobNotFound"
    assert await stored_points(settings, run_id) == (0, 0)


async def test_a_run_without_reports_has_no_series(
    api: httpx.AsyncClient, busybox_image: str
) -> None:
    created = await api.post(
        "/jobs",
        json={"name": unique_name("quiet"), "image": busybox_image, "command": ["true"]},
    )
    job = await wait_for_status(api, created.json()["job_id"], {"completed", "failed"})
    response = await api.get(f"/jobs/{job['job_id']}/runs/{job['latest_run_id']}/metrics")
    assert response.status_code == 200
    assert response.json()["series"] == []


async def test_jobs_are_found_by_part_of_their_name_in_any_case(api: httpx.AsyncClient) -> None:
    marker = unique_name("Search")
    names = [f"{marker}-ResNet", f"{marker}-bert", f"{marker}-resnet_50%"]
    for name in names:
        body = {"name": name, "image": "trainer:1", "command": ["true"], "schedule": "0 2 * * *"}
        assert (await api.post("/jobs", json=body)).status_code == 201

    async def found(**params: Any) -> list[str]:
        response = await api.get("/jobs", params=params)
        assert response.status_code == 200, response.text
        assert response.json()["total"] == len(response.json()["jobs"])
        return sorted(job["name"] for job in response.json()["jobs"])

    assert await found(name=f"{marker.lower()}-resnet") == sorted([names[0], names[2]])
    assert await found(name=marker.upper()) == sorted(names)
    # LIKE's wildcards are plain characters here.
    assert await found(name=f"{marker}-resnet_50%") == [names[2]]
    assert await found(name=f"{marker}%") == []
    # With the guide's parameters alongside.
    assert await found(name=marker, status_filter="pending", page=1, page_size=10) == sorted(names)
    assert await found(name=marker, status_filter="completed") == []
    too_long = await api.get("/jobs", params={"name": "x" * 256})
    assert too_long.status_code == 400
    for job in (await api.get("/jobs", params={"name": marker})).json()["jobs"]:
        assert (await api.delete(f"/jobs/{job['job_id']}")).status_code == 204


async def test_a_burst_of_reports_is_bounded_and_written_while_the_trainer_runs(
    api: httpx.AsyncClient, busybox_image: str
) -> None:
    """3,000 reports as fast as the shell prints them, then silence: the history holds at
    most 2,000 points with the first and the last, written before the trainer ends."""
    report = '{\\"step\\": $i, \\"metrics\\": {\\"loss\\": $((i % 7)), \\"n\\": $i}}'
    burst = f'i=1; while [ $i -le 3000 ]; do echo "PROGRESS {report}"; i=$((i + 1)); done'
    created = await api.post(
        "/jobs",
        json={
            "name": unique_name("burst"),
            "image": busybox_image,
            "command": ["sh", "-c", f"{burst}; sleep 120"],
        },
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["job_id"]
    try:
        job = await wait_for_status(api, job_id, {"running"})

        async def written() -> dict[str, Any] | None:
            response = await api.get(f"/jobs/{job_id}/runs/{job['latest_run_id']}/metrics")
            assert response.status_code == 200, response.text
            series = {entry["name"]: entry for entry in response.json()["series"]}
            n = series.get("n")
            return series if n and n["steps"][-1] == 3000 else None

        series = await eventually(written, timeout=60)
        assert (await api.get(f"/jobs/{job_id}")).json()["status"] == "running"
        for entry in series.values():
            assert 100 < len(entry["steps"]) <= 2000
            assert entry["steps"][0] == 1 and entry["steps"][-1] == 3000
            assert entry["steps"] == sorted(entry["steps"])
        assert series["n"]["values"][-1] == 3000.0
        assert {0.0, 6.0} <= set(series["loss"]["values"])
    finally:
        await api.post(f"/jobs/{job_id}/cancel")
