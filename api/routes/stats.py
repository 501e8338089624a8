"""``GET /stats``: how many jobs are in each status."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import JobServiceDep
from jobs.responses import Stats

router = APIRouter(tags=["stats"])


@router.get("/stats")
async def stats(jobs: JobServiceDep) -> Stats:
    return await jobs.stats()
