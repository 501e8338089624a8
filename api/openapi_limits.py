"""The parts of the request schemas that depend on this server's settings.

``secret_env`` may name only what SECRET_ENV_ALLOW allows (never the orchestrator's own
settings), ``notifications.email_to`` only addresses in EMAIL_ALLOWED_DOMAINS (and only with
SMTP), ``notifications.slack_channel`` only with a Slack bot token. The schema says so, so a
client (or a fuzzer) reading it knows what this server will take.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from core.secret_env import own_setting_names
from core.settings import Settings
from jobs.fields import RESERVED_ENV

ENV_NAME = "^[A-Za-z_][A-Za-z0-9_]*$"


def _point_to(field: dict[str, Any], old: str, new: str) -> None:
    for variant in [field, *field.get("anyOf", [])]:
        if variant.get("$ref", "") == f"#/components/schemas/{old}":
            variant["$ref"] = f"#/components/schemas/{new}"


def split_request_components(schemas: dict[str, Any]) -> None:
    """Requests get their own copy of the components they share with answers: answers show
    what older jobs hold (a memory limit or a recipient allowed when they were written),
    whatever the request rules say today."""
    for name, field in (("NotificationSettings", "notifications"), ("Resources", "resources")):
        schemas[f"{name}Request"] = copy.deepcopy(schemas[name])
        for model in ("JobCreate", "JobUpdate"):
            _point_to(schemas[model]["properties"][field], name, f"{name}Request")
    memory = schemas["Resources"]["properties"]["memory"]
    for variant in memory.get("anyOf", [memory]):
        variant.pop("pattern", None)


def _any_case(text: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in text)


def secret_env_items(settings: Settings) -> dict[str, Any]:
    exact = [name for name in settings.secret_env_allow if not name.endswith("*")]
    prefixes = [name[:-1] for name in settings.secret_env_allow if name.endswith("*")]
    choices: list[dict[str, Any]] = [{"enum": exact}] if exact else []
    choices += [{"pattern": f"^{re.escape(prefix)}"} for prefix in prefixes]
    refused = sorted(own_setting_names() | RESERVED_ENV)
    return {
        "type": "string",
        "maxLength": 255,
        "pattern": ENV_NAME,
        "anyOf": choices,
        "not": {"pattern": f"^(?:{'|'.join(_any_case(name) for name in refused)})$"},
    }


def restrict_to_settings(schemas: dict[str, Any], settings: Settings) -> None:
    for model in ("JobCreate", "JobUpdate"):
        # Pydantic keeps only the length of a dict key's constraints.
        env = schemas[model]["properties"]["env"]
        env = next((v for v in env.get("anyOf", []) if v.get("type") == "object"), env)
        env["propertyNames"] = {
            "maxLength": 255,
            "pattern": ENV_NAME,
            "not": {"enum": sorted(RESERVED_ENV)},
        }
        field = schemas[model]["properties"]["secret_env"]
        if settings.secret_env_allow:
            field["items"] = secret_env_items(settings)
        else:
            field["maxItems"] = 0
            field["items"] = {"type": "string"}
    split_request_components(schemas)
    notifications = schemas["NotificationSettingsRequest"]["properties"]
    domains = settings.email_allowed_domains if settings.smtp_host else []
    if domains:
        pattern = f"^[^@\\s]+@(?:{'|'.join(_any_case(d) for d in domains)})$"
        email_to: dict[str, Any] = {
            "type": "array",
            "items": {"type": "string", "pattern": pattern},
        }
    else:
        email_to = {"type": "array", "maxItems": 0, "description": "No per-job recipients here"}
    notifications["email_to"] = {"anyOf": [email_to, {"type": "null"}], "default": None}
    if not settings.slack_bot_token:
        notifications["slack_channel"] = {
            "type": "null",
            "default": None,
            "description": "Per-job Slack channels need SLACK_BOT_TOKEN on this server",
        }
