"""The Temporal worker: the only place workflows and activities are registered.

Run it with ``python -m worker``. SIGTERM or SIGINT shuts it down gracefully; running training
containers are left alone so the next worker reattaches to them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.bookkeeping import RunStoreActivities
from activities.notify import NotifyActivities
from activities.training import TrainingActivities
from core.logging import configure_logging
from core.settings import Settings
from jobs.creation import JobCreator
from jobs.temporal import JobSchedules, TemporalConnection
from runtimes.base import ContainerRuntime
from runtimes.factory import build_runtime
from store.db import create_engine, create_sessionmaker
from supervision.interceptors import LogContextInterceptor
from supervision.run_reconciler import RunReconciler
from workflows.training import TrainingJobWorkflow

logger = logging.getLogger(__name__)


async def connect(settings: Settings) -> Client:
    """The worker's client; with WORKER_METRICS_PORT, its SDK metrics are served to Prometheus."""
    runtime = None
    if settings.worker_metrics_port:
        address = f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"
        try:
            runtime = Runtime(
                telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address))
            )
        except ValueError as err:  # the port is taken (another worker on this host)
            # Metrics are worth a warning, not a worker that refuses to run jobs.
            logger.warning("worker metrics off: %s", err)
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )


@asynccontextmanager
async def build_worker(
    settings: Settings, client: Client, runtime: ContainerRuntime | None = None
) -> AsyncIterator[Worker]:
    """A worker with every workflow and activity registered; the engine is closed on exit."""
    engine = create_engine(settings.sqlalchemy_url, settings.database_pool)
    sessions = create_sessionmaker(engine)
    schedules = JobSchedules(
        TemporalConnection.of(client),
        settings.task_queue,
        timedelta(seconds=settings.rpc_timeout_seconds),
    )
    store_activities = RunStoreActivities(
        sessions, settings, JobCreator(sessions, schedules, settings)
    )
    training = TrainingActivities(runtime or build_runtime(settings), sessions, settings)
    notify = NotifyActivities(sessions, settings)
    try:
        yield Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[TrainingJobWorkflow],
            activities=[
                store_activities.start_run,
                store_activities.record_run_status,
                training.run_training_container,
                notify.notify_run_status,
            ],
            graceful_shutdown_timeout=timedelta(seconds=5),
            interceptors=[LogContextInterceptor()],
            # Heartbeats carry cancellation back; the default throttle (80% of the heartbeat
            # timeout) would let a cancel take half a minute to reach the container.
            max_heartbeat_throttle_interval=timedelta(seconds=2),
        )
    finally:
        await engine.dispose()


async def main() -> None:
    settings = Settings()
    configure_logging(settings)
    client = await connect(settings)
    runtime = build_runtime(settings)
    engine = create_engine(settings.sqlalchemy_url, settings.database_pool)
    reconciler = RunReconciler(create_sessionmaker(engine), client, runtime, settings)
    async with build_worker(settings, client, runtime) as worker:
        reconciling = asyncio.create_task(reconciler.run_forever())
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        run = asyncio.create_task(worker.run())
        logger.info(
            "worker polling task queue %s at %s",
            settings.task_queue,
            client.service_client.config.target_host,
        )
        await asyncio.wait(
            [run, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        if not run.done():
            logger.info("shutting down the worker")
            await worker.shutdown()
        reconciling.cancel()
        await run
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
