"""Named API keys with roles, and the checks on the front door's allowlists.

``API_KEYS`` holds ``name:role:key`` entries separated by commas, e.g.
``ci:operator:Zt7...,grafana:viewer:Qp2...``. Roles, each allowed what the one before it is:
``viewer`` (reads), ``operator`` (also trigger, retry, cancel, pause, resume), ``admin``
(everything). ``API_KEY`` stays an admin key named ``API_KEY_NAME``. Names are what the API
records as the actor of a change; keys never appear in a message, a log line or a repr.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, get_args

from pydantic import SecretStr

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
KEY_NAME_PATTERN = r"^[A-Za-z0-9._@-]{1,64}$"
# A key shorter than this is a typo or a placeholder, not a secret.
MIN_KEY_LENGTH = 16
_ENV_NAME_OR_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\*?$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


@dataclass(frozen=True)
class NamedKey:
    name: str
    role: Role
    key: SecretStr = field(repr=False)


def role_allows(role: Role, needed: Role) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


def parse_api_keys(raw: SecretStr | None, api_key_name: str) -> list[NamedKey]:
    """The entries of ``API_KEYS``; a ValueError names the bad entry by position, not by key."""
    text = raw.get_secret_value() if raw else ""
    keys: list[NamedKey] = []
    for position, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        name, role, key = (entry.split(":", 2) + ["", ""])[:3]
        where = f"API_KEYS entry {position}"
        if not re.fullmatch(KEY_NAME_PATTERN, name):
            raise ValueError(f"{where}: the name must match {KEY_NAME_PATTERN} (name:role:key)")
        if role not in ROLES:
            raise ValueError(f"{where} ({name}): the role must be one of {', '.join(ROLES)}")
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(f"{where} ({name}): the key needs {MIN_KEY_LENGTH}+ characters")
        if name == api_key_name or name in {k.name for k in keys}:
            raise ValueError(f"{where}: the name {name} is used twice (API_KEY is {api_key_name})")
        keys.append(NamedKey(name, role, SecretStr(key)))
    if len({k.key.get_secret_value() for k in keys}) != len(keys):
        raise ValueError("API_KEYS: two entries have the same key")
    return keys


def check_front_door_lists(secret_env_allow: list[str], email_domains: list[str]) -> None:
    bad = [p for p in secret_env_allow if not _ENV_NAME_OR_PREFIX.fullmatch(p) or p == "*"]
    if bad:
        raise ValueError(f"SECRET_ENV_ALLOW: not a variable name or PREFIX_* pattern: {bad}")
    bad = [d for d in email_domains if not _DOMAIN.fullmatch(d)]
    if bad:
        raise ValueError(f"EMAIL_ALLOWED_DOMAINS: not a lower-case domain name: {bad}")
