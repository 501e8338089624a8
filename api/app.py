"""The FastAPI application factory; shared clients live on ``app.state`` for its lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

from api.errors import install_error_handlers
from api.front_door import AuthMiddleware, BodyLimitMiddleware, RateLimitMiddleware
from api.log_context import LogContextMiddleware, bind_path_job_id
from api.metrics import ApiMetrics, HttpMetricsMiddleware
from api.openapi import install_openapi
from api.routes import docs, health, jobs, metrics, runs, schedule, stats, whoami, workers
from api.ui.router import install_ui
from core.settings import Settings
from jobs.control_plane import ControlPlaneReconciler
from jobs.creation import JobCreator
from jobs.definition_sync import replay_grace
from jobs.run_control import RunService
from jobs.run_history import RunHistory
from jobs.schedule_control import SchedulingService
from jobs.service import JobService
from jobs.temporal import JobSchedules, TemporalConnection, register_search_attributes
from jobs.workers import WorkerDirectory
from store.db import create_engine, create_sessionmaker

logger = logging.getLogger(__name__)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine = create_engine(settings.sqlalchemy_url, settings.database_pool)
    rpc_timeout = timedelta(seconds=settings.rpc_timeout_seconds)
    temporal = TemporalConnection(
        settings.temporal_address, settings.temporal_namespace, rpc_timeout
    )
    sessions = create_sessionmaker(engine)
    schedules = JobSchedules(temporal, settings.task_queue, rpc_timeout)
    scheduling = SchedulingService(sessions, schedules, settings)
    service = JobService(sessions, schedules, settings, scheduling)
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.temporal = temporal
    app.state.jobs = service
    app.state.creator = JobCreator(sessions, schedules, settings)
    app.state.scheduling = scheduling
    app.state.history = RunHistory(sessions, settings)
    app.state.runs = RunService(sessions, schedules, settings)
    app.state.workers = WorkerDirectory(sessions, settings)
    control_plane = ControlPlaneReconciler(
        sessions, temporal, service, scheduling, settings, role="api"
    )
    app.state.control_plane = control_plane
    try:
        await register_search_attributes(await temporal.client(), settings.temporal_namespace)
        # Only the cluster's reconciler (the lease holder) replays the journal, and never
        # entries young enough to belong to requests in flight on other replicas.
        if await control_plane.lead():
            await service.reconcile(older_than=replay_grace(rpc_timeout))
    except Exception as err:
        logger.warning("start-up reconciliation postponed: %s", err)
    reconciler = asyncio.create_task(control_plane.run_forever())
    try:
        yield
    finally:
        reconciler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reconciler
        await engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API. Settings default to the environment (and ``.env``)."""
    # Offline: /docs and /redoc load Swagger UI and ReDoc from the installed package, no CDN;
    # no validator badge either (Swagger UI sends the schema's URL to validator.swagger.io).
    app = FastAPIOffline(
        title="Training Job Orchestrator",
        description="Scheduled, retried, checkpointed training containers on Temporal.",
        version="0.1.0",
        lifespan=_lifespan,
        dependencies=[Depends(bind_path_job_id)],
        redoc_url=None,  # api.routes.docs serves it
        swagger_ui_parameters={"validatorUrl": None},
    )
    settings = app.state.settings = settings or Settings()
    install_error_handlers(app)
    install_openapi(app, settings)
    app.state.metrics = ApiMetrics()
    # The last added runs first: logging and metrics see every answer, the key is checked
    # before the rate limit counts the request, and both before the body is read.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimitMiddleware, per_minute=settings.rate_limit_per_minute)
    app.add_middleware(AuthMiddleware, settings=settings)
    app.add_middleware(HttpMetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(LogContextMiddleware)
    for module in (health, docs, whoami, jobs, runs, schedule, stats, workers, metrics):
        app.include_router(module.router)
    # The dashboard's pages hold no data; what they show comes from the protected routes.
    install_ui(app)
    return app
