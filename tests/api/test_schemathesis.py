"""The OpenAPI document is the contract: schemathesis fuzzes the live API against it.

Every operation, every check, at least 50 examples each, with auth off and with auth on; the
worker's IMAGE_PULL_POLICY is ``never`` (the suite's settings), so generated jobs fail fast.
A remaining failure is accepted only if it is named in ACCEPTED with the reason.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from temporalio.client import Client

from core.settings import Settings
from tests.api.test_front_door import ADMIN_KEY, secured
from tests.conftest import live_server

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
EXAMPLES = 50
# (operation, failure) -> why this failure is the API being right. Failures of the stateful
# phase are named by the operation of the request that failed.
ACCEPTED: dict[tuple[str, str], str] = {
    ("POST /jobs/{job_id}/backfill", "ST202 Schema-valid request rejected"): (
        "JSON Schema cannot relate two fields: `end` must be after `start` (400). Nor can it "
        "know the job: a one-off job has no schedule to backfill, and a range holding more "
        "than BACKFILL_MAX_FIRINGS firings of its cron is refused (both 400, documented)."
    ),
    ("PUT /jobs/{job_id}", "ST202 Schema-valid request rejected"): (
        "An If-Match that names another version of the job is refused with 412, as RFC 9110 "
        "says and docs/api.md documents; no schema can know the job's current version."
    ),
    ("DELETE /jobs/{job_id}", "ST202 Schema-valid request rejected"): (
        "The same If-Match rule as PUT: 412 for a version that is not the current one."
    ),
    ("GET /jobs", "ST202 Schema-valid request rejected"): (
        "A cursor is opaque: only one a page handed out (next_cursor) is valid; any other "
        "string is a documented 400, which a schema for a string cannot express."
    ),
    ("GET /jobs/{job_id}/runs", "ST202 Schema-valid request rejected"): (
        "The same opaque cursor as GET /jobs: a string no page handed out is a 400."
    ),
}


# Streaming operations are not fuzzed: a followed log of a running job answers for as long as
# the run lasts. The logs operation itself is, with follow=false.
CONFIG = """
[[operations]]
include-name = "GET /jobs/{job_id}/logs"
parameters = { "query.follow" = "false" }
"""


async def fuzz(url: str, report: Path, *extra: str) -> dict[str, Any]:
    config = report.with_name("schemathesis.toml")
    config.write_text(CONFIG)
    process = await asyncio.create_subprocess_exec(
        SCHEMATHESIS,
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "14",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--workers",
        "1",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    text = output.decode(errors="replace")
    (report.parent / f"{report.stem}.log").write_text(text)
    assert report.exists(), text[-5000:]
    result: dict[str, Any] = json.loads(report.read_text())
    result["_output"] = text
    return result


_BLOCK = re.compile(r"^_{3,} (.+?) _{3,}$")
_CHECK = re.compile(r"^- (ST\d+ .+)$")


def _operation(curl: str, templates: list[str]) -> str | None:
    """``METHOD /template`` of the request a reproducing curl line sends."""
    method = curl.split("-X ", 1)[1].split()[0] if "-X " in curl else "GET"
    url = next((w for w in reversed(curl.split()) if w.strip("'\"").startswith("http")), None)
    if url is None:
        return None  # a reproduction without a URL on its line: named by its block
    path = urlsplit(url.strip("'\"")).path
    for template in templates:
        if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)), path):
            return f"{method} {template}"
    return None


def failures_of(result: dict[str, Any], templates: list[str]) -> set[tuple[str, str]]:
    """(operation, failure) of every failure, and ("*", error) of every error.

    Read from the report's text, where each failure shows the request that reproduces it:
    a failure of the stateful phase is named by that request's operation too.
    """
    found, label, pending, curl = set(), "*", [], ""
    for line in [*result["_output"].splitlines(), "end"]:
        text = line.strip()
        if text.startswith("curl "):
            curl = text  # a stateful failure lists its steps: the last one failed
            continue
        if curl and pending and text:
            operation = _operation(curl, templates) or label
            found |= {(operation, failure) for failure in pending}
            pending, curl = [], ""
        if block := _BLOCK.match(line):
            label, pending, curl = block[1], [], ""
        elif check := _CHECK.match(text):
            pending.append(check[1])
    found |= {("*", f"error: {error['title']}") for error in result["errors"]}
    if result["failures"] and not found:
        found.add(("*", "failures the report's text does not show"))
    return found


async def schedule_ids(client: Client) -> set[str]:
    return {schedule.id async for schedule in await client.list_schedules()}


async def delete_job(http: httpx.AsyncClient, job_id: str) -> None:
    """Delete a generated job through the API; its runs fail fast, so a 409 does not last."""
    for _ in range(30):
        response = await http.delete(f"/jobs/{job_id}")
        if response.status_code in (204, 404):
            return
        await http.post(f"/jobs/{job_id}/cancel")
        await asyncio.sleep(1)


@pytest.mark.parametrize("auth", [False, True], ids=["auth-off", "auth-on"])
async def test_the_live_api_keeps_its_openapi_contract(
    settings: Settings, worker: None, temporal_client: Client, tmp_path: Path, auth: bool
) -> None:
    served = secured(settings) if auth else settings
    headers = ["-H", f"X-API-Key: {ADMIN_KEY}"] if auth else []
    before = await schedule_ids(temporal_client)
    async with live_server(served) as url:
        auth_header = {"X-API-Key": ADMIN_KEY} if auth else {}
        async with httpx.AsyncClient(base_url=url, headers=auth_header, timeout=60) as http:
            templates = list((await http.get("/openapi.json")).json()["paths"])
            try:
                result = await fuzz(url, tmp_path / "report.json", *headers)
            finally:
                # Generated jobs fire on generated crons: left alone, they would load the rest
                # of the session with runs every minute.
                new = await schedule_ids(temporal_client) - before
                await asyncio.gather(*(delete_job(http, job_id) for job_id in new))
    unexpected = failures_of(result, templates) - set(ACCEPTED)
    assert not unexpected, f"{sorted(unexpected)}\n{result['_output'][-20000:]}"
