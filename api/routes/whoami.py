"""``GET /whoami``: the name and role of the key a request was made with."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.auth import PrincipalDep
from api.errors import ERROR_RESPONSES
from core.api_keys import Role

router = APIRouter(tags=["auth"])


class WhoAmI(BaseModel):
    name: str
    role: Role
    auth_enabled: bool


@router.get("/whoami", responses=ERROR_RESPONSES)
async def whoami(request: Request, principal: PrincipalDep) -> WhoAmI:
    """The key's name (recorded as the actor of your changes) and role; ``anonymous`` and
    ``admin`` while auth is off."""
    enabled: bool = request.app.state.settings.enable_api_auth
    return WhoAmI(name=principal.name, role=principal.role, auth_enabled=enabled)
