"""A worker's sweep stops the units of runs placed again since they started, and only those."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import update

from activities.fencing import stop_stale_units
from core.settings import Settings
from runtimes.base import ContainerSpec, unit_name
from runtimes.docker import DockerRuntime
from store import jobs as job_store
from store import runs as run_store
from store.db import create_engine, create_sessionmaker
from store.models import Run, utcnow
from tests.supervision.test_run_reconciler import containers_of


async def test_the_sweep_stops_older_epochs_and_keeps_the_current_one(
    settings: Settings, busybox_image: str
) -> None:
    job_id = f"sweep-{uuid.uuid4().hex[:8]}"
    run_id = f"train-{job_id}"
    engine = create_engine(settings.sqlalchemy_url)
    sessions = create_sessionmaker(engine)
    runtime = DockerRuntime(network_mode="none", pull_policy="never")

    def unit(attempt: int, epoch: int | None, deployment: str) -> ContainerSpec:
        return ContainerSpec(
            name=unit_name(job_id, run_id, attempt) + ("-other" if deployment else ""),
            job_id=job_id,
            run_id=run_id,
            attempt=attempt,
            image=busybox_image,
            command=["sleep", "60"],
            deployment=deployment or settings.deployment,
            epoch=epoch,
        )

    # The run is at epoch 2: attempt 1's unit is of epoch 1 (stale), attempt 2's current;
    # a unit without an epoch (no lease) and another deployment's unit are not this sweep's.
    stale, current, unleased = unit(1, 1, ""), unit(2, 2, ""), unit(3, None, "")
    foreign = unit(4, 1, "10.0.0.1:7233/default/other-queue")
    try:
        async with sessions() as session:
            fields = {"name": job_id, "image": busybox_image, "command": ["true"], "max_retries": 0}
            session.add(job_store.new_job(job_id, fields))
            await session.commit()
            await run_store.start_run(session, job_id, run_id, "exec-1", utcnow(), "sdk")
            await session.execute(update(Run).where(Run.run_id == run_id).values(placement_epoch=2))
            await session.commit()
        for spec in (stale, current, unleased, foreign):
            await runtime.start(spec)
        stopped = await stop_stale_units(runtime, sessions, settings.deployment, 1.0)
        left = sorted(c.name for c in await asyncio.to_thread(containers_of, job_id))  # type: ignore[attr-defined]
    finally:
        for spec in (stale, current, unleased, foreign):
            await runtime.remove(spec.name)
        await engine.dispose()
    assert stopped == [stale.name]
    assert left == sorted([current.name, unleased.name, foreign.name])
