"""Who is calling and what they may do: API keys with roles, decided before the body is read.

Keys come in ``X-API-Key`` or ``Authorization: Bearer``. Each presented key is compared with
every configured key through SHA-256 digests in constant time, so neither the key's length
nor which entry matched shows in the timing. A route's role is ``x-required-role`` in its
table below: reads need ``viewer``, the run controls ``operator``, every other change ``admin``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from core.api_keys import Role
from core.settings import Settings

# Open without a key: the health check, the API's own documentation and the dashboard's pages
# and assets (api/ui), which hold no data: what they show comes from the protected routes,
# called with the key the page asks for.
OPEN_PATHS = frozenset(
    {"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/ui"}
)
OPEN_PREFIXES = ("/static-offline-docs/", "/ui/")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What an operator may do besides reading: steer runs and schedules, never change a job.
OPERATOR_ACTIONS = re.compile(r"/jobs/[^/]+/(trigger|retry|cancel|pause|resume)")


@dataclass(frozen=True)
class Principal:
    """The caller: the key's name (recorded as the actor of changes) and its role."""

    name: str
    role: Role


# With auth off every caller may do everything; changes are recorded under this name.
ANONYMOUS = Principal("anonymous", "admin")


class KeyRing:
    """The configured keys, as digests."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.enable_api_auth
        self._keys = [
            (hashlib.sha256(k.key.get_secret_value().encode()).digest(), Principal(k.name, k.role))
            for k in settings.named_keys
        ]

    def principal_of(self, presented: str | None) -> Principal | None:
        """The key's principal, or None; every entry is compared, whatever matches."""
        if not self.enabled:
            return ANONYMOUS
        digest = hashlib.sha256((presented or "").encode()).digest()
        found = None
        for expected, principal in self._keys:
            if hmac.compare_digest(digest, expected) and presented:
                found = principal
        return found


def presented_key(headers: dict[str, str]) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return credentials.strip()
    return None


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def required_role(method: str, path: str) -> Role:
    """The role a request needs, by method and path (a path or its OpenAPI template)."""
    if method in READ_METHODS:
        return "viewer"
    if method == "POST" and OPERATOR_ACTIONS.fullmatch(path):
        return "operator"
    return "admin"


def get_principal(request: Request) -> Principal:
    principal: Principal = request.scope.get("state", {}).get("principal", ANONYMOUS)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
