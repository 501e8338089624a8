"""API-key authentication: ``X-API-Key`` or ``Authorization: Bearer``, compared in constant time."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request

from core.settings import Settings


def _presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return credentials.strip()
    return None


async def require_api_key(request: Request) -> None:
    """Dependency on every protected router; a no-op while auth is off."""
    settings: Settings = request.app.state.settings
    if not settings.enable_api_auth:
        return
    expected = settings.api_key.get_secret_value().encode() if settings.api_key else b""
    presented = (_presented_key(request) or "").encode()
    if not expected or not secrets.compare_digest(presented, expected):
        raise HTTPException(
            status_code=401,
            detail="Missing or invalid API key (send X-API-Key or Authorization: Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )
