"""``GET /health``: is the API able to reach its database and Temporal?"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from api.deps import EngineDep, TemporalDep
from jobs.responses import Health
from store.db import ping
from store.models import utcnow

router = APIRouter(tags=["health"])
logger = logging.getLogger(__name__)
SERVICE_NAME = "training-orchestrator-api"
_CHECK_TIMEOUT = 3.0


async def _database_ok(engine: EngineDep) -> bool:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT):
            await ping(engine)
    except Exception as err:  # any failure means "not connected"; the reason goes to the log
        logger.warning("health: database check failed: %s", type(err).__name__)
        return False
    return True


async def _temporal_ok(temporal: TemporalDep) -> bool:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT):
            client = await temporal.client()
            await client.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=timedelta(seconds=_CHECK_TIMEOUT)
            )
    except Exception as err:
        logger.warning("health: Temporal check failed: %s", type(err).__name__)
        return False
    return True


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(engine: EngineDep, temporal: TemporalDep) -> JSONResponse:
    """200 when the database and Temporal answer, 503 with the same body when either does not."""
    database_ok, temporal_ok = await asyncio.gather(_database_ok(engine), _temporal_ok(temporal))
    body = Health(
        status="healthy" if database_ok and temporal_ok else "unhealthy",
        timestamp=utcnow(),
        service=SERVICE_NAME,
        database_connected=database_ok,
        temporal_connected=temporal_ok,
    )
    return JSONResponse(
        status_code=200 if body.status == "healthy" else 503, content=body.model_dump(mode="json")
    )


# HEAD answers the same status without the body (load balancers and uptime checks use it).
router.add_api_route(
    "/health",
    health,
    methods=["HEAD"],
    operation_id="health_head",
    response_model=Health,
    responses={503: {"model": Health}},
)
