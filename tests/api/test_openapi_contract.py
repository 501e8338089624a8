"""The OpenAPI document says what the API does, and the API does what it says."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from core.settings import Settings
from tests.api.test_front_door import secured, with_settings
from tests.conftest import api_client, unique_name

JOB = {"image": "t:1", "command": ["true"], "schedule": "0 0 1 1 *"}


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


async def test_no_422_and_json_errors_everywhere(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for method, path, operation in operations(schema):
        assert "422" not in operation["responses"], (method, path)
        for code, response in operation["responses"].items():
            if code.startswith(("4", "5")) and path != "/health":
                assert list(response["content"]) == ["application/json"], (method, path, code)
        assert operation["tags"], (method, path)
    tags = [tag["name"] for tag in schema["tags"]]
    assert tags == ["health", "jobs", "runs", "scheduling", "stats", "metrics", "auth"]
    jobs = schema["paths"]["/jobs"]
    assert jobs["post"]["x-required-role"] == "admin"
    assert schema["paths"]["/jobs/{job_id}/trigger"]["post"]["x-required-role"] == "operator"
    assert {"409", "413", "400"} <= set(jobs["post"]["responses"])
    page = next(p for p in jobs["get"]["parameters"] if p["name"] == "page")
    assert page["schema"]["maximum"] == 1_000_000


async def test_security_as_configured(settings: Settings, worker: None) -> None:
    async with api_client(secured(settings, rate_limit_per_minute=100)) as api:
        schema = (await api.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    stats = schema["paths"]["/stats"]["get"]
    assert {"401", "429", "503"} <= set(stats["responses"])
    assert "403" not in stats["responses"]  # every key may read
    assert stats["security"] == [{"ApiKeyHeader": []}, {"BearerAuth": []}]
    assert "security" not in schema["paths"]["/health"]["get"]
    assert "429" not in schema["paths"]["/health"]["get"]["responses"]
    assert "403" in schema["paths"]["/jobs"]["post"]["responses"]
    async with api_client(settings) as api:
        open_schema = (await api.get("/openapi.json")).json()
    # Auth off: no key is asked for, so none is declared, and no 401 either.
    assert "security" not in open_schema["paths"]["/stats"]["get"]
    assert "401" not in open_schema["paths"]["/stats"]["get"]["responses"]
    assert "ApiKeyHeader" in open_schema["components"]["securitySchemes"]  # Swagger's Authorize


async def test_limits_follow_the_settings(settings: Settings, worker: None) -> None:
    mail = {"smtp_host": "127.0.0.1", "smtp_from": "o@lab.example", "smtp_to": ["t@lab.example"]}
    configured = with_settings(
        settings, secret_env_allow=["HF_*"], email_allowed_domains=["lab.example"], **mail
    )
    async with api_client(configured) as api:
        schemas = (await api.get("/openapi.json")).json()["components"]["schemas"]
    secret = schemas["JobCreate"]["properties"]["secret_env"]["items"]
    assert {"pattern": "^HF_"} in secret["anyOf"]
    email = schemas["NotificationSettingsRequest"]["properties"]["email_to"]["anyOf"][0]
    assert "[lL][aA][bB]" in email["items"]["pattern"]
    # Answers show what jobs hold, whatever the settings allow today.
    assert "[lL][aA][bB]" not in str(schemas["NotificationSettings"]["properties"]["email_to"])
    async with api_client(with_settings(settings, secret_env_allow=[])) as api:
        schemas = (await api.get("/openapi.json")).json()["components"]["schemas"]
    assert schemas["JobCreate"]["properties"]["secret_env"]["maxItems"] == 0
    request_slack = schemas["NotificationSettingsRequest"]["properties"]["slack_channel"]
    assert request_slack["type"] == "null"


@pytest.mark.parametrize("path", ["/jobs", "/jobs/train-00000000/runs"])
async def test_huge_pages_are_400_not_500(api: httpx.AsyncClient, path: str) -> None:
    for page in ("4611686018427387904", "1000001", "0"):
        response = await api.get(path, params={"page": page})
        assert response.status_code == 400, (page, response.text)
        assert response.json()["error_type"] == "ValidationError"


async def test_loose_coercions_are_refused(api: httpx.AsyncClient) -> None:
    created = await api.post("/jobs", json={**JOB, "name": unique_name()})
    job_id = created.json()["job_id"]
    for body in ({"allow_overlap": "yes"}, {"allow_overlap": 1}):
        response = await api.post(f"/jobs/{job_id}/trigger", json=body)
        assert response.status_code == 400, body
    backfill = {"start": 0, "end": "2025-01-02T00:00:00Z"}
    response = await api.post(f"/jobs/{job_id}/backfill", json=backfill)
    assert response.status_code == 400 and "start" in response.json()["detail"]
    logs = await api.get(f"/jobs/{job_id}/logs", params={"follow": "yes"})
    assert logs.status_code == 400 and "follow" in logs.json()["detail"]
    three = await api.put(f"/jobs/{job_id}", json={"max_retries": 3.0})
    assert three.status_code == 200 and three.json()["max_retries"] == 3
    assert (await api.put(f"/jobs/{job_id}", json={"max_retries": "3"})).status_code == 400
    assert (await api.delete(f"/jobs/{job_id}")).status_code == 204


async def test_405_names_every_method_and_head_on_health(live_url: str) -> None:
    async with httpx.AsyncClient(base_url=live_url) as http:
        refused = await http.patch("/jobs/train-00000000")
        assert refused.status_code == 405
        assert refused.headers["Allow"] == "DELETE, GET, PUT"
        assert refused.json()["error_type"] == "MethodNotAllowed"
        assert (await http.delete("/jobs")).headers["Allow"] == "GET, POST"
        head = await http.head("/health")
        assert head.status_code == 200 and head.content == b""
        assert (await http.head("/health")).headers["content-type"] == "application/json"
