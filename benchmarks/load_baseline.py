"""The baseline of benchmarks/load.py: GET /jobs and GET /stats as a plain FastAPI endpoint.

The same SQL the orchestrator's API issues for these two routes (a page of jobs newest first,
the total, the page's latest runs for their progress; counts by status and schedule state),
over the same database through SQLAlchemy, answered with plain dicts: no middleware, no auth,
no response models. What the orchestrator's API adds on top is what load.py compares.

Usage (load.py starts it): ``DATABASE_URL=... python benchmarks/load_baseline.py --port N``
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from store.db import create_engine
from store.models import Job, Run


def _plain(row: Any) -> dict[str, Any]:
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in row._mapping.items()
    }


def create_baseline_app(database_url: str) -> FastAPI:
    engine = create_engine(database_url)
    app = FastAPI()
    jobs, runs = Job.__table__, Run.__table__

    @app.get("/jobs")
    async def list_jobs(page: int = 1, page_size: int = 50) -> JSONResponse:
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(jobs)
                    .order_by(jobs.c.created_at.desc(), jobs.c.job_id.desc())
                    .offset((page - 1) * page_size)
                    .limit(page_size)
                )
            ).all()
            total = await connection.scalar(select(func.count()).select_from(jobs))
            run_ids = [row.latest_run_id for row in rows if row.latest_run_id]
            progress = {}
            if run_ids:
                found = await connection.execute(
                    select(runs.c.run_id, runs.c.progress).where(runs.c.run_id.in_(run_ids))
                )
                progress = {row.run_id: row.progress for row in found}
        listed = [
            {**_plain(row), "progress": progress.get(row.latest_run_id or "")} for row in rows
        ]
        body = {"jobs": listed, "total": total, "page": page, "page_size": page_size}
        return JSONResponse(body)

    @app.get("/stats")
    async def stats() -> JSONResponse:
        async with engine.connect() as connection:
            counts = dict(
                (
                    await connection.execute(
                        select(jobs.c.status, func.count()).group_by(jobs.c.status)
                    )
                ).all()
            )
            paused = await connection.scalar(
                select(func.count()).select_from(jobs).where(jobs.c.paused)
            )
            scheduled = await connection.scalar(
                select(func.count())
                .select_from(jobs)
                .where(jobs.c.schedule.is_not(None), jobs.c.paused.is_(False))
            )
        body = {"total_jobs": sum(counts.values()), **counts}
        return JSONResponse({**body, "paused": paused, "scheduled": scheduled})

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    app = create_baseline_app(os.environ["DATABASE_URL"])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
