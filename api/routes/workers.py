"""``GET /workers``: each worker's inventory, free GPUs, running runs and last heartbeat."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import WorkerDirectoryDep
from jobs.workers import WorkerList

router = APIRouter(tags=["workers"])


@router.get("/workers")
async def list_workers(workers: WorkerDirectoryDep) -> WorkerList:
    return await workers.list()
