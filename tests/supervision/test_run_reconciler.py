"""A run terminated in Temporal is finished in SQL and its container removed."""

from __future__ import annotations

import asyncio

import docker
import httpx
from temporalio.client import Client

from core.settings import Settings
from jobs.closed_runs import ClosedRunFinder
from runtimes.base import LABEL_JOB_ID, ContainerSpec, unit_name
from runtimes.docker import DockerRuntime
from store.db import create_engine, create_sessionmaker
from supervision.run_reconciler import RunReconciler
from tests.conftest import eventually, unique_name, wait_for_status


def containers_of(job_id: str) -> list[object]:
    client = docker.from_env()
    try:
        return list(client.containers.list(all=True, filters={"label": f"{LABEL_JOB_ID}={job_id}"}))
    finally:
        client.close()


async def test_terminated_run_is_finished_and_its_container_removed(
    api: httpx.AsyncClient, temporal_client: Client, settings: Settings, busybox_image: str
) -> None:
    created = await api.post(
        "/jobs",
        json={
            "name": unique_name("terminated"),
            "image": busybox_image,
            "command": ["sh", "-c", "echo before-terminate; sleep 120"],
        },
    )
    job_id = created.json()["job_id"]
    running = await wait_for_status(api, job_id, {"running"})
    await asyncio.sleep(1)
    await temporal_client.get_workflow_handle(running["latest_run_id"]).terminate("from the UI")
    assert len(containers_of(job_id)) == 1, "terminating a workflow leaves its container"

    # A unit of another orchestrator sharing this Docker engine, for a run unknown here.
    runtime = DockerRuntime(network_mode="none", pull_policy="never")
    foreign = ContainerSpec(
        name=unit_name("train-f0f0f0f0", "elsewhere-run", 1),
        job_id="train-f0f0f0f0",
        run_id="elsewhere-run",
        attempt=1,
        image=busybox_image,
        command=["sleep", "60"],
        deployment="10.0.0.1:7233/default/other-queue",
    )
    await runtime.start(foreign)

    engine = create_engine(settings.sqlalchemy_url)
    reconciler = RunReconciler(
        create_sessionmaker(engine),
        temporal_client,
        runtime,
        settings.model_copy(update={"stop_grace_seconds": 1.0}),
    )
    # Finishing the run in SQL is the cluster reconciler's part (tests/jobs/test_control_plane).
    finder = ClosedRunFinder(create_sessionmaker(engine), temporal_client)
    try:
        finished = await eventually(finder.finish, timeout=30)
        report = await reconciler.reconcile_once()
        after_first = (await api.get(f"/jobs/{job_id}")).json()
        # Other tests' runs may be reconciled too; this job's state must not change again.
        await reconciler.reconcile_once()
    finally:
        await engine.dispose()

    assert finished >= 1 and report.units_removed >= 1
    assert len(containers_of("train-f0f0f0f0")) == 1, "another deployment's unit is left alone"
    await runtime.remove(foreign.name)
    job = (await api.get(f"/jobs/{job_id}")).json()
    assert job == after_first
    assert job["status"] == "cancelled"
    assert "terminated" in job["error_message"]
    assert containers_of(job_id) == []
    assert "before-terminate" in (await api.get(f"/jobs/{job_id}/logs")).text
    # No longer stuck: the job can be changed again.
    assert (await api.put(f"/jobs/{job_id}", json={"max_retries": 1})).status_code == 200
