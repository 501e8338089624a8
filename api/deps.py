"""Dependency aliases for route functions."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.creation import JobCreator
from jobs.run_control import RunService
from jobs.run_history import RunHistory
from jobs.schedule_control import SchedulingService
from jobs.service import JobService
from jobs.temporal import TemporalConnection
from jobs.workers import WorkerDirectory


def get_job_creator(request: Request) -> JobCreator:
    creator: JobCreator = request.app.state.creator
    return creator


def get_job_service(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


def get_run_service(request: Request) -> RunService:
    service: RunService = request.app.state.runs
    return service


def get_scheduling(request: Request) -> SchedulingService:
    service: SchedulingService = request.app.state.scheduling
    return service


def get_run_history(request: Request) -> RunHistory:
    history: RunHistory = request.app.state.history
    return history


def get_worker_directory(request: Request) -> WorkerDirectory:
    directory: WorkerDirectory = request.app.state.workers
    return directory


def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


def get_temporal(request: Request) -> TemporalConnection:
    temporal: TemporalConnection = request.app.state.temporal
    return temporal


JobCreatorDep = Annotated[JobCreator, Depends(get_job_creator)]
JobServiceDep = Annotated[JobService, Depends(get_job_service)]
RunServiceDep = Annotated[RunService, Depends(get_run_service)]
SchedulingDep = Annotated[SchedulingService, Depends(get_scheduling)]
RunHistoryDep = Annotated[RunHistory, Depends(get_run_history)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
TemporalDep = Annotated[TemporalConnection, Depends(get_temporal)]
WorkerDirectoryDep = Annotated[WorkerDirectory, Depends(get_worker_directory)]
