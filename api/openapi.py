"""The OpenAPI document as the API behaves: its security, every status each operation can
answer (400, never FastAPI's 422), errors as JSON, and the roles the routes need.

FastAPI derives the document from the routes; the statuses that the front door (401, 403,
413, 429) and the domain errors (404, 409, 503) add are not visible there, so they are
added here, from the same rules the API applies, once per app (auth and the rate limit
depend on its settings).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.auth import is_open, required_role
from api.openapi_limits import restrict_to_settings
from core.settings import Settings

# Grouped as docs/api.md groups them.
TAGS = [
    {"name": "health", "description": "Is the API able to reach its database and Temporal?"},
    {"name": "jobs", "description": "Create, list, read, update, delete and retry jobs."},
    {"name": "runs", "description": "A job's runs: history, cancel, logs and checkpoints."},
    {"name": "scheduling", "description": "A job's schedule: pause, resume, trigger, backfill."},
    {"name": "stats", "description": "Jobs by status."},
    {"name": "metrics", "description": "Prometheus metrics."},
    {"name": "auth", "description": "Who the API key belongs to, and its role."},
]
SECURITY_SCHEMES = {
    "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "BearerAuth": {"type": "http", "scheme": "bearer"},
}
# Operations that answer 409 besides IdempotencyConflict: a name taken, a job running or not.
CONFLICTS = {
    ("post", "/jobs"),
    ("put", "/jobs/{job_id}"),
    ("delete", "/jobs/{job_id}"),
    ("post", "/jobs/{job_id}/retry"),
    ("post", "/jobs/{job_id}/cancel"),
    ("post", "/jobs/{job_id}/trigger"),
}
# Operations that honour If-Match: 412 when it names another version of the job.
CONDITIONAL = {("put", "/jobs/{job_id}"), ("delete", "/jobs/{job_id}")}
IDEMPOTENT = {
    ("post", "/jobs"),
    ("post", "/jobs/{job_id}/retry"),
    ("post", "/jobs/{job_id}/trigger"),
    ("post", "/jobs/{job_id}/backfill"),
}
# Answered from memory: no database or Temporal behind them.
NEVER_UNAVAILABLE = {("get", "/whoami")}
_DESCRIPTIONS = {
    400: "Invalid input: `detail` names the field (ValidationError)",
    401: "Missing or invalid API key (AuthenticationError)",
    403: "The key's role does not allow this (Forbidden)",
    404: "No such job or run (JobNotFound, RunNotFound)",
    409: "Conflict (DuplicateJobName, JobRunning, JobNotRunning, IdempotencyConflict)",
    412: "If-Match names another version of the job (PreconditionFailed)",
    413: "Body larger than MAX_BODY_BYTES (PayloadTooLarge)",
    429: "Over RATE_LIMIT_PER_MINUTE (RateLimited); see Retry-After",
    500: "A bug (InternalError); the API log has the details",
    503: "The database or Temporal is unreachable (ServiceUnavailable)",
}
_ERROR = {"$ref": "#/components/schemas/ErrorBody"}


def _error_codes(method: str, path: str, operation: dict[str, Any], settings: Settings) -> set[int]:
    key = (method, path)
    params = operation.get("parameters", [])
    codes = {500}
    if "requestBody" in operation or any(p["in"] != "path" for p in params):
        codes.add(400)
    if "requestBody" in operation:
        codes.add(413)
    if any(p["in"] == "path" for p in params):
        codes.add(404)
    if key in CONFLICTS or key in IDEMPOTENT:
        codes.add(409)
    if key in CONDITIONAL:
        codes.add(412)
    if key not in NEVER_UNAVAILABLE:
        codes.add(503)
    protected = not is_open(path)
    if protected and settings.enable_api_auth:
        codes.add(401)
        if required_role(method.upper(), path) != "viewer":
            codes.add(403)
    if path != "/health" and settings.rate_limit_per_minute:
        codes.add(429)
    return codes


def _describe(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            kept = {c: r for c, r in responses.items() if c.startswith("2")}
            if path == "/health":
                kept["503"] = responses["503"]
            for code in sorted(_error_codes(method, path, operation, settings)):
                entry: dict[str, Any] = {
                    "description": _DESCRIPTIONS[code],
                    "content": {"application/json": {"schema": _ERROR}},
                }
                if code == 429:
                    retry_after = {"schema": {"type": "integer", "minimum": 1}}
                    entry["headers"] = {"Retry-After": retry_after}
                kept.setdefault(str(code), entry)
            operation["responses"] = dict(sorted(kept.items()))
            if not is_open(path):
                operation["x-required-role"] = required_role(method.upper(), path)
                if settings.enable_api_auth:
                    operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
    components = schema.setdefault("components", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(unused, None)
    restrict_to_settings(components["schemas"], settings)
    components["securitySchemes"] = SECURITY_SCHEMES
    return schema


def install_openapi(app: FastAPI, settings: Settings) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=TAGS,
            )
            app.openapi_schema = _describe(schema, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


@cache
def _template(path: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")


def allowed_methods(app: FastAPI, path: str) -> list[str] | None:
    """Every method some route answers at ``path`` (None when no documented route has it)."""
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        if _template(template).match(path):
            methods |= {method.upper() for method in operations}
    return sorted(methods) or None
