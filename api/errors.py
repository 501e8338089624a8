"""Every error leaves the API as ``{"detail": str, "error_type": str}`` with the guide's codes."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

from api.openapi import allowed_methods
from core.errors import (
    CheckpointPathConflict,
    DuplicateJobName,
    IdempotencyConflict,
    InvalidInput,
    JobNotFound,
    JobNotRunning,
    JobRunning,
    OrchestratorError,
    PreconditionFailed,
    ServiceUnavailable,
)
from jobs.responses import ErrorBody
from jobs.run_history import RunNotFound

logger = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[OrchestratorError], int] = {
    InvalidInput: 400,
    JobNotFound: 404,
    RunNotFound: 404,
    DuplicateJobName: 409,
    JobRunning: 409,
    JobNotRunning: 409,
    IdempotencyConflict: 409,
    CheckpointPathConflict: 409,
    PreconditionFailed: 412,
    ServiceUnavailable: 503,
}
# Temporal answers that mean "not reachable right now" rather than "you asked wrongly".
_UNREACHABLE = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
}
# Pages beyond this would need offsets no database handles (and no one reads that far).
MAX_PAGE = 1_000_000
# The error body every route documents in OpenAPI, by status code.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 404, 409, 503)
}
# Refusals raised by FastAPI or Starlette themselves, named as the error table names them.
_HTTP_ERROR_TYPES = {
    400: "ValidationError",
    401: "AuthenticationError",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
    429: "RateLimited",
}
# Routes that honour If-Match also answer 412.
CONDITIONAL_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    412: {"model": ErrorBody},
}


def error_response(status_code: int, detail: str, error_type: str) -> JSONResponse:
    return JSONResponse(
        status_code=status_code, content={"detail": detail, "error_type": error_type}
    )


def describe_validation_error(exc: RequestValidationError) -> str:
    """One readable line naming each bad field, e.g. ``max_retries: Input should be ...``."""
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if error.get("type") == "json_invalid":
            parts.append("request body is not valid JSON")
        elif error.get("type") == "missing" and not loc:
            parts.append("request body is required")
        else:
            field = ".".join(loc) or "body"
            # Some validators already name their field (the cron checker does).
            parts.append(message if message.startswith(f"{field}: ") else f"{field}: {message}")
    return "; ".join(dict.fromkeys(parts))


def install_error_handlers(app: FastAPI) -> None:
    """Map domain, validation, Temporal and database errors to responses in one place."""

    @app.exception_handler(OrchestratorError)
    async def _domain(_: Request, exc: OrchestratorError) -> JSONResponse:
        return error_response(STATUS_BY_ERROR.get(type(exc), 500), exc.detail, exc.error_type)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, describe_validation_error(exc), "ValidationError")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error_type = _HTTP_ERROR_TYPES.get(exc.status_code, "HTTPError")
        response = error_response(exc.status_code, str(exc.detail), error_type)
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405:
            # Starlette names the methods of the first route matching the path only; GET,
            # PUT and DELETE of /jobs/{job_id} are three routes.
            methods = allowed_methods(app, request.url.path)
            if methods:
                response.headers["Allow"] = ", ".join(methods)
        return response

    @app.exception_handler(RPCError)
    async def _temporal(_: Request, exc: RPCError) -> JSONResponse:
        if exc.status in _UNREACHABLE:
            return error_response(
                503, f"Temporal is unreachable: {exc.message}", "ServiceUnavailable"
            )
        logger.error("unexpected Temporal error: %s (%s)", exc.message, exc.status)
        return error_response(500, "Internal server error (see the API log)", "InternalError")

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(OSError)
    async def _database(_: Request, exc: Exception) -> JSONResponse:
        logger.warning("database unavailable: %s", type(exc).__name__)
        return error_response(503, "The database is unavailable", "ServiceUnavailable")

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return error_response(500, "Internal server error (see the API log)", "InternalError")
