"""A live worker tells the runs leased on a host silent for HOST_LOST_SECONDS to move.

The run's workflow is a real TrainingJobWorkflow execution on a task queue no worker polls:
Temporal records the signal in its history, which is what is checked.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from sqlalchemy import update
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from core.settings import Settings
from store import capacity
from store import jobs as job_store
from store import runs as run_store
from store.db import create_engine, create_sessionmaker
from store.models import WorkerHost, utcnow
from supervision.host_loss import HostLossWatch
from workflows.models import HOST_LOST_SIGNAL, WORKFLOW_NAME, TrainingRunInput


async def test_runs_on_a_silent_host_are_signalled_with_their_epoch(
    settings: Settings, temporal_client: Client
) -> None:
    pool = f"host-loss-{uuid.uuid4().hex[:8]}"
    local = settings.model_copy(
        update={"task_queue": pool, "host_lost_seconds": 60.0, "worker_lost_seconds": 30.0}
    )
    job_id = f"lost-{uuid.uuid4().hex[:8]}"
    run_id = f"train-{job_id}"
    engine = create_engine(settings.sqlalchemy_url)
    sessions = create_sessionmaker(engine)
    long_ago = utcnow() - timedelta(minutes=5)
    handle = None
    try:
        async with sessions() as session:
            for name, seen in (("me", utcnow()), ("frozen", long_ago)):
                await capacity.register_worker(
                    session,
                    name=name,
                    pool=pool,
                    task_queue=f"{pool}-{name}",
                    gpus=["0"],
                    cpus=1.0,
                    memory_bytes=2**30,
                    max_attempts=1,
                    now=seen,
                )
            fields = {"name": job_id, "image": "busybox", "command": ["true"], "max_retries": 0}
            session.add(job_store.new_job(job_id, fields))
            await session.commit()
            await run_store.start_run(session, job_id, run_id, "exec-1", long_ago, "sdk")
            await session.commit()
            # Placed on "frozen" while it was alive (only it was, then): epoch 1.
            placed = await capacity.admit(
                session,
                pool=pool,
                job_id=job_id,
                run_id=run_id,
                need=capacity.Need(gpus=1, cpus=1.0),
                now=long_ago,
                lost_after=timedelta(seconds=30),
            )
        assert (placed.admitted, placed.host, placed.epoch) == (True, "frozen", 1)
        handle = await temporal_client.start_workflow(
            WORKFLOW_NAME,
            TrainingRunInput(job_id=job_id, job=fields),
            id=run_id,
            task_queue=f"nobody-polls-{pool}",
        )
        watch = HostLossWatch(sessions, temporal_client, local, f"{pool}-me")
        assert await watch.tick() == 1

        # A worker whose own registration is stale (just back from a freeze) sends nothing.
        async with sessions() as session:
            await session.execute(
                update(WorkerHost)
                .where(WorkerHost.task_queue == f"{pool}-me")
                .values(last_seen_at=long_ago)
            )
            await session.commit()
        assert await watch.tick() == 0

        signals = [
            event.workflow_execution_signaled_event_attributes
            for event in (await handle.fetch_history()).events
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        ]
        assert [s.signal_name for s in signals] == [HOST_LOST_SIGNAL]
        assert json.loads(signals[0].input.payloads[0].data) == 1
    finally:
        if handle is not None:
            await handle.terminate("test over")
        await engine.dispose()
