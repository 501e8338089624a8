"""``GET /metrics``: Prometheus text exposition of the API's traffic and the store's totals."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import EngineDep
from api.metrics import ApiMetrics
from jobs.responses import ErrorBody
from store.metrics import read_snapshot

router = APIRouter(tags=["metrics"])


def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {CONTENT_TYPE_PLAIN_0_0_4.split(";")[0]: {}}},
    401: {"model": ErrorBody},
    503: {"model": ErrorBody},
}


@router.get("/metrics", response_class=Response, responses=_RESPONSES)
async def metrics(request: Request, engine: EngineDep, metrics: MetricsDep) -> Response:
    """Request counts and latencies by route, jobs by status, run, retry and notification totals.

    Job and run figures are read from the database at each scrape; 503 while it is down.
    """
    async with AsyncSession(engine) as session:
        snapshot = await read_snapshot(session)
    body, content_type = metrics.render(snapshot, request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})
