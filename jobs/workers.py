"""The workers of this deployment as ``GET /workers`` shows them: inventory and use."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.settings import Settings
from store import capacity
from store.models import utcnow


class WorkerResponse(BaseModel):
    """One worker: what it offers, what is free, what runs there, when it was last seen."""

    name: str
    task_queue: str
    alive: bool
    gpus: list[str]
    gpus_total: int
    gpus_free: int
    free_gpus: list[str]
    cpus: float
    cpus_free: float
    memory_bytes: int
    memory_free_bytes: int
    max_attempts: int
    running_runs: list[str]
    started_at: datetime
    last_seen_at: datetime


class WorkerList(BaseModel):
    workers: list[WorkerResponse]
    total: int


class WorkerDirectory:
    """Reads the workers of this deployment (its TASK_QUEUE) from SQL."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    async def list(self) -> WorkerList:
        lost_after = timedelta(seconds=self._settings.worker_lost_seconds)
        async with self._sessions() as session:
            rows = await capacity.list_workers(
                session, self._settings.task_queue, utcnow(), lost_after
            )
        workers = []
        for worker, usage in rows:
            free = usage.free_gpus if usage is not None else []
            workers.append(
                WorkerResponse(
                    name=worker.name,
                    task_queue=worker.task_queue,
                    alive=usage is not None,
                    gpus=list(worker.gpus),
                    gpus_total=len(worker.gpus),
                    gpus_free=len(free),
                    free_gpus=free,
                    cpus=worker.cpus,
                    cpus_free=max(worker.cpus - usage.cpus_used, 0.0) if usage else 0.0,
                    memory_bytes=worker.memory_bytes,
                    memory_free_bytes=max(worker.memory_bytes - usage.memory_used, 0)
                    if usage
                    else 0,
                    max_attempts=worker.max_attempts,
                    running_runs=sorted(usage.runs) if usage else [],
                    started_at=worker.started_at,
                    last_seen_at=worker.last_seen_at,
                )
            )
        return WorkerList(workers=workers, total=len(workers))
