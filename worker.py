"""The Temporal worker: the only place workflows and activities are registered.

Run it with ``python -m worker``. SIGTERM or SIGINT shuts it down gracefully; running training
containers are left alone so the next worker reattaches to them.

One process polls two task queues (the worker-specific task queue pattern): the shared
``TASK_QUEUE`` (workflows, bookkeeping, notifications and ``pull_image``, which any worker may
take) and its own ``<TASK_QUEUE>-<WORKER_NAME>``, where the training attempts whose image this
worker pulled run, so that their retries reach the engine holding their container.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from types import TracebackType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.admission import CapacityActivities
from activities.bookkeeping import RunStoreActivities
from activities.fencing import stop_stale_units
from activities.images import ImageActivities
from activities.notify import NotifyActivities
from activities.self_fence import SelfFence
from activities.training import TrainingActivities
from core.logging import configure_logging
from core.settings import Settings
from jobs.control_plane import ControlPlaneReconciler
from jobs.creation import JobCreator
from jobs.schedule_control import SchedulingService
from jobs.service import JobService
from jobs.temporal import JobSchedules, TemporalConnection
from runtimes.base import ContainerRuntime
from runtimes.factory import build_runtime
from store.db import create_engine, create_sessionmaker
from supervision.host_loss import HostLossWatch
from supervision.interceptors import LogContextInterceptor
from supervision.inventory import Inventory, inventory_of
from supervision.run_reconciler import RunReconciler
from supervision.worker_registry import WorkerRegistry
from workflows.sandbox import workflow_runner
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


class WorkerGroup:
    """The Temporal workers of one process, one per task queue, run and stopped together."""

    def __init__(self, workers: Sequence[Worker]) -> None:
        self.workers = list(workers)
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> WorkerGroup:
        try:
            for worker in self.workers:
                await self._stack.enter_async_context(worker)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()
        await self._stack.__aexit__(exc_type, exc, tb)

    async def shutdown(self) -> None:
        """Stop polling on every queue; wait (each within its grace period) for the end."""
        await asyncio.gather(*(worker.shutdown() for worker in self.workers))


@asynccontextmanager
async def build_worker(
    settings: Settings,
    client: Client,
    runtime: ContainerRuntime | None = None,
    inventory: Inventory | None = None,
) -> AsyncIterator[WorkerGroup]:
    """Workers for the shared queue and this worker's own, registered with its inventory
    (renewed while the block runs); the engine is closed on exit."""
    inventory = inventory or inventory_of(settings)
    engine = create_engine(settings.sqlalchemy_url, settings.database_pool)
    sessions = create_sessionmaker(engine)
    runtime = runtime or build_runtime(settings)
    # Before each (re)registration: units of runs placed elsewhere meanwhile are stopped.
    fence = functools.partial(
        stop_stale_units, runtime, sessions, settings.deployment, settings.stop_grace_seconds
    )
    # Cut off past the deadline, the worker stops its own training units (self-fence).
    self_fence = SelfFence(
        runtime, settings.deployment, settings.self_fence_deadline, settings.stop_grace_seconds
    )
    registry = WorkerRegistry(sessions, client, settings, inventory, fence, self_fence)
    schedules = JobSchedules(
        TemporalConnection.of(client),
        settings.task_queue,
        timedelta(seconds=settings.rpc_timeout_seconds),
    )
    images = ImageActivities(runtime, settings)
    store_activities = RunStoreActivities(
        sessions, settings, JobCreator(sessions, schedules, settings), images.ready_here
    )
    training = TrainingActivities(runtime, sessions, settings, self_fence)
    notify = NotifyActivities(sessions, settings)
    admission = CapacityActivities(sessions, settings)
    common: dict[str, Any] = {
        "graceful_shutdown_timeout": timedelta(seconds=5),
        "interceptors": [LogContextInterceptor()],
        # Heartbeats carry cancellation back; the default throttle (80% of the heartbeat
        # timeout) would let a cancel take half a minute to reach the container.
        "max_heartbeat_throttle_interval": timedelta(seconds=2),
    }
    heartbeat: asyncio.Task[None] | None = None
    watchdog: asyncio.Task[None] | None = None
    # Runs on hosts silent for HOST_LOST_SECONDS are told to move (supervision/host_loss.py).
    watch = HostLossWatch(sessions, client, settings, inventory.task_queue)
    watching: asyncio.Task[None] | None = None
    try:
        await registry.register()
        # Registered with a client that just connected: the deadline counts from here, not
        # from before a slow first clean-up.
        await self_fence.renewed()
        heartbeat = asyncio.create_task(registry.run_forever())
        watchdog = asyncio.create_task(
            self_fence.run_forever(min(1.0, settings.self_fence_deadline / 4))
        )
        watching = asyncio.create_task(watch.run_forever())
        yield WorkerGroup(
            [
                Worker(
                    client,
                    task_queue=settings.task_queue,
                    workflows=[TrainingJobWorkflow],
                    workflow_runner=workflow_runner(),
                    activities=[
                        store_activities.start_run,
                        store_activities.record_run_status,
                        images.pull_image,
                        # Attempts of runs started before pull_image are sent here.
                        training.run_training_container,
                        notify.notify_run_status,
                        admission.acquire_capacity,
                        admission.release_capacity,
                    ],
                    **common,
                ),
                Worker(
                    client,
                    task_queue=settings.worker_task_queue,
                    # The leased worker pulls the image too, and attempts without a lease
                    # (jobs asking for no resources) land here after their pull elsewhere.
                    activities=[training.run_training_container, images.pull_image],
                    # What the inventory can hold, not the SDK's default of 100; pulls
                    # share the slots, as they precede their attempts.
                    max_concurrent_activities=inventory.max_attempts * 2,
                    **common,
                ),
            ]
        )
    finally:
        for task in (heartbeat, watchdog, watching):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await engine.dispose()


def build_control_plane(
    settings: Settings, client: Client, sessions: async_sessionmaker[AsyncSession]
) -> ControlPlaneReconciler:
    """The worker's candidate for the cluster's one SQL-Temporal reconciler."""
    temporal = TemporalConnection.of(client)
    rpc_timeout = timedelta(seconds=settings.rpc_timeout_seconds)
    schedules = JobSchedules(temporal, settings.task_queue, rpc_timeout)
    scheduling = SchedulingService(sessions, schedules, settings)
    service = JobService(sessions, schedules, settings, scheduling)
    return ControlPlaneReconciler(sessions, temporal, service, scheduling, settings, "worker")


async def main() -> None:
    settings = Settings()
    configure_logging(settings)
    inventory = inventory_of(settings)
    # Blocking engine calls (asyncio.to_thread) run on a pool sized for the attempts this
    # worker takes at once, not the default min(32, cores + 4) threads.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(inventory.threads, thread_name_prefix="engine")
    )
    client = await connect(settings)
    runtime = build_runtime(settings)
    engine = create_engine(settings.sqlalchemy_url, settings.database_pool)
    sessions = create_sessionmaker(engine)
    reconciler = RunReconciler(sessions, client, runtime, settings)
    control_plane = build_control_plane(settings, client, sessions)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # A fatal error of either worker cancels this task and is raised when the block ends.
    async with build_worker(settings, client, runtime, inventory) as workers, workers:
        reconciling = asyncio.create_task(reconciler.run_forever())
        leading = asyncio.create_task(control_plane.run_forever())
        logger.info(
            "worker %s polling task queues %s and %s at %s",
            settings.worker_name,
            settings.task_queue,
            settings.worker_task_queue,
            client.service_client.config.target_host,
        )
        try:
            await stop.wait()
            logger.info("shutting down the worker")
        finally:
            reconciling.cancel()
            leading.cancel()
            await asyncio.gather(leading, return_exceptions=True)  # gives the lease up
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
