"""The OpenAPI document is the contract: schemathesis fuzzes the live API against it.

Every operation, every check, at least 50 examples each, with auth off and with auth on; the
worker's IMAGE_PULL_POLICY is ``never`` (the suite's settings), so generated jobs fail fast.
A remaining failure is accepted only if it is named in ACCEPTED with the reason.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from tests.api.test_front_door import ADMIN_KEY, secured
from tests.conftest import live_server

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
EXAMPLES = 50
# (operation, failure) -> why this failure is the API being right.
ACCEPTED: dict[tuple[str, str], str] = {
    ("POST /jobs/{job_id}/backfill", "ST202 Schema-valid request rejected"): (
        "JSON Schema cannot relate two fields: `end` must be after `start` (400). Nor can it "
        "know the job: a one-off job has no schedule to backfill, and a range holding more "
        "than BACKFILL_MAX_FIRINGS firings of its cron is refused (both 400, documented)."
    ),
}


async def fuzz(url: str, report: Path, *extra: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        SCHEMATHESIS,
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


def failures_of(result: dict[str, Any]) -> set[tuple[str, str]]:
    """(operation, failure code) of every failure, and ("*", error title) of every error."""
    found = {
        (operation, f"{failure['code']} {failure['title']}")
        for failure in result["failures"]
        for operation in failure["operations"]
    }
    found |= {("*", f"error: {error['title']}") for error in result["errors"]}
    return found


@pytest.mark.parametrize("auth", [False, True], ids=["auth-off", "auth-on"])
async def test_the_live_api_keeps_its_openapi_contract(
    settings: Settings, worker: None, tmp_path: Path, auth: bool
) -> None:
    served = secured(settings) if auth else settings
    headers = ["-H", f"X-API-Key: {ADMIN_KEY}"] if auth else []
    async with live_server(served) as url:
        result = await fuzz(url, tmp_path / "report.json", *headers)
    unexpected = failures_of(result) - set(ACCEPTED)
    assert not unexpected, f"{sorted(unexpected)}\n{result['_output'][-20000:]}"
