"""Tag the log records of a request on one job with that job's id (``job_id`` in JSON logs)."""

from __future__ import annotations

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from core.logging import bind_job_id, log_context


class LogContextMiddleware:
    """Gives each request a clean log context, so no id outlives the request that bound it.

    Under uvicorn every request has a task of its own anyway; an in-process client (tests)
    runs requests in the caller's task, where a bound id would otherwise stay behind.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with log_context():
            await self.app(scope, receive, send)


async def bind_path_job_id(request: Request) -> None:
    """App-wide dependency: a route with a ``{job_id}`` parameter logs with that id.

    Async on purpose: FastAPI runs it in the request's own context (a sync dependency would
    run in a thread, on a copy of the context, and the id would not reach the route).
    """
    job_id = request.path_params.get("job_id")
    if isinstance(job_id, str):
        bind_job_id(job_id)
