"""The API's front door, as pure ASGI middleware: who calls, how often, and how much they send.

Each decision is made before the request body is read: a caller without a key is refused
(401) and one whose role does not cover the route too (403) whatever it sends; the body is
then read into memory only up to MAX_BODY_BYTES (413 past it, whatever Content-Length says).
The rate limit (RATE_LIMIT_PER_MINUTE, per key, per client address when auth is off) is a
moving window of the ``limits`` library, kept in this process's memory.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import ANONYMOUS, KeyRing, Principal, is_open, presented_key, required_role
from core.api_keys import role_allows
from core.settings import Settings

UNAUTHENTICATED = "Missing or invalid API key (send X-API-Key or Authorization: Bearer)"
RATE_EXEMPT = frozenset({"/health"})


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    detail: str,
    error_type: str,
    headers: dict[str, str] | None = None,
) -> None:
    body = {"detail": detail, "error_type": error_type}
    await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)


def principal_of(scope: Scope) -> Principal:
    principal: Principal = scope.get("state", {}).get("principal", ANONYMOUS)
    return principal


class AuthMiddleware:
    """401 without a valid key, 403 when the key's role does not cover the route."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.keys = KeyRing(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        principal = self.keys.principal_of(presented_key(dict(Headers(scope=scope))))
        if principal is None:
            await _refuse(
                scope,
                receive,
                send,
                401,
                UNAUTHENTICATED,
                "AuthenticationError",
                {"WWW-Authenticate": "Bearer"},
            )
            return
        needed = required_role(scope["method"], scope["path"])
        if not role_allows(principal.role, needed):
            detail = f"The key {principal.name!r} ({principal.role}) may not do this: {needed}"
            await _refuse(scope, receive, send, 403, detail + " role needed", "Forbidden")
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


class RateLimitMiddleware:
    """429 ``RateLimited`` with ``Retry-After`` past RATE_LIMIT_PER_MINUTE requests."""

    def __init__(self, app: ASGIApp, per_minute: int) -> None:
        self.app = app
        self.item = RateLimitItemPerMinute(per_minute) if per_minute else None
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.item is None or scope["type"] != "http" or scope["path"] in RATE_EXEMPT:
            await self.app(scope, receive, send)
            return
        principal = principal_of(scope)
        if principal is ANONYMOUS:
            client = scope.get("client")
            identity = f"client:{client[0] if client else 'unknown'}"
        else:
            identity = f"key:{principal.name}"
        if not self.limiter.hit(self.item, identity):
            reset = self.limiter.get_window_stats(self.item, identity).reset_time
            wait = max(1, math.ceil(reset - time.time()))
            detail = f"More than {self.item.amount} requests a minute; retry in {wait} s"
            headers = {"Retry-After": str(wait)}
            await _refuse(scope, receive, send, 429, detail, "RateLimited", headers)
            return
        await self.app(scope, receive, send)


class PayloadTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Reads the body, counting bytes as they arrive, then hands it on; 413 past the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"The request body is larger than MAX_BODY_BYTES ({self.max_bytes} bytes)"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _refuse(scope, receive, send, 413, detail, "PayloadTooLarge")
            return
        try:
            body, disconnected = await self._read(receive)
        except PayloadTooLarge:
            await _refuse(scope, receive, send, 413, detail, "PayloadTooLarge")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed or disconnected:
                return {"type": "http.disconnect"} if disconnected else await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> tuple[bytes, bool]:
        """The whole body, and whether the client went away before sending all of it."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks), True
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise PayloadTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False
