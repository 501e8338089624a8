"""Whether the API may serve on API_HOST as configured: never openly beyond this host."""

from __future__ import annotations

import ipaddress

from core.settings import Settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def exposure_problem(settings: Settings) -> str | None:
    """Why the API must not start, or None. Without keys, anyone who reaches a non-loopback
    address could create jobs, which run containers with the worker's Docker engine."""
    if settings.enable_api_auth or is_loopback(settings.api_host):
        return None
    if settings.allow_unauthenticated:
        return None
    return (
        f"refusing to serve on API_HOST={settings.api_host} with ENABLE_API_AUTH=false: anyone "
        "who can reach it could run containers. Set ENABLE_API_AUTH=true and API_KEY (or "
        "API_KEYS), serve on 127.0.0.1, or set ALLOW_UNAUTHENTICATED=true to accept the risk."
    )


def exposure_warning(settings: Settings) -> str | None:
    if settings.enable_api_auth or is_loopback(settings.api_host):
        return None
    return (
        f"serving on API_HOST={settings.api_host} WITHOUT authentication "
        "(ALLOW_UNAUTHENTICATED=true): anyone who can reach it can run containers"
    )
