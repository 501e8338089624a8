"""The README and the docs/ pages: their links resolve and their curl examples run.

Links: every relative link of README.md and docs/*.md must name an existing file and, with a
``#anchor``, a heading of that file (GitHub's slugs).

Curl examples: every curl command in a fenced block of README.md and docs/*.md runs through the
real curl binary against a live API, backed by the suite's Temporal dev server and worker, and
must exit 0 with the status the example implies (201 for POST /jobs, 204 for DELETE, otherwise
200). docs/api-usage-guide.md is left to tests/api/test_guide_examples.py. Pages are read in order,
README.md first, then docs/*.md by name; a page's examples run top to bottom, as a reader would
paste them. What is substituted, and why:

* ``http://localhost:8000`` becomes the live API's URL. An example with ``$API_KEY`` goes to a
  second live API with ``ENABLE_API_AUTH=true`` and the key put in its place; an example that
  sets per-job ``notifications`` goes to a third, whose settings have a Slack bot token and an
  SMTP server (the API only checks that they are configured; nothing is sent).
* The ``name`` of a created job gets a random suffix: names are unique, and the guide's test
  creates the same names in this session.
* The image ``busybox`` becomes the suite's locally built busybox image (tests never pull).
* The placeholder job id ``train-a1b2c3d4`` stands for:
  - in a run id (``train-a1b2c3d4-<time>``): the README's walk-through job and its finished run;
  - in a cancel: a job whose run is running (a busybox ``sleep``);
  - after an example on the same page that created a one-off job (no ``schedule``): that job,
    as in the README's walk-through; a logs example waits, like a reader watching the status,
    until the job's run has started;
  - otherwise a new job of its own with a cron schedule that does not fire during the test.

One-off jobs created with the busybox image must complete. The jobs of the example trainer's
examples (an image that does not exist here, or the process runtime) are checked for the API's
answer only; their runs fail in this worker, which is fine for what the page shows.

An example that cannot run as written goes into ``NOT_RUN`` with the reason; none do today.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic_settings import BaseSettings

from tests.api.test_guide_examples import GUIDE_URL, PLACEHOLDER_ID, expected_status, new_job
from tests.conftest import BUSYBOX_IMAGE, eventually, live_server, unique_name

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CURL_PAGES = [page for page in PAGES if page.name != "api-usage-guide.md"]
# How many curl examples the pages hold: a changed count means an example was added, removed
# or no longer recognised, and this number (and the rules above) should be looked at again.
CURL_EXAMPLES = 35
# Examples that cannot run as written: a distinctive part of the command, and why.
NOT_RUN: dict[str, str] = {}

API_KEY = "docs-example-key"
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
RUN_ID = re.compile(rf"{PLACEHOLDER_ID}-\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
CURL = re.compile(r"\s*curl\s+(-|\"?https?://)")  # not "curl / CLI" in a picture
ATTEMPT_HEADER = re.compile(r"^--- attempt \d+ ---\n", re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


# --- links -----------------------------------------------------------------------------------


def without_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def prose(text: str) -> str:
    """The page without its fenced blocks and inline code, where nothing is a link."""
    return re.sub(r"`[^`\n]*`", "", without_fences(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", without_fences(page.read_text()), flags=re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.is_file():
            broken.append(f"{target}: no such file")
        elif anchor and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert not broken, broken


def test_readme_is_a_short_introduction() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 270
    assert "make run" in text and "make test" in text


# --- curl examples ---------------------------------------------------------------------------


@dataclass
class Example:
    page: Path
    line: int
    text: str

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text, comments=True)

    def __str__(self) -> str:
        return f"{self.page.name}:{self.line}: {' '.join(self.argv)}"


def curl_examples(page: Path) -> list[Example]:
    """Each curl command in the page's fenced blocks, with its continuation lines."""
    text = page.read_text()
    examples = []
    for block in FENCE.finditer(text):
        first_line = text.count("\n", 0, block.start(1)) + 1
        pending: list[str] = []
        start = 0
        for number, line in enumerate(block.group(1).splitlines()):
            if not pending and not CURL.match(line):
                continue
            if not pending:
                start = first_line + number
            continued = line.rstrip().endswith("\\")  # the command goes on on the next line
            pending.append(line.rstrip()[:-1] if continued else line)
            if continued:
                continue
            try:
                shlex.split("\n".join(pending), comments=True)
            except ValueError:  # a quote is still open: the command goes on
                continue
            examples.append(Example(page, start, "\n".join(pending)))
            pending = []
    return examples


@dataclass
class Stack:
    """The live APIs and the jobs the examples' placeholders stand for."""

    url: str
    auth_url: str
    notify_url: str
    finished_run: tuple[str, str] | None = None  # the README walk-through's job and run
    page_job: str | None = None
    one_off_jobs: list[str] = field(default_factory=list)
    followed: dict[str, str] = field(default_factory=dict)


async def get_job(url: str, job_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def job_in(url: str, job_id: str, statuses: set[str]) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        job = await get_job(url, job_id)
        return job if job["status"] in statuses else None

    job: dict[str, Any] = await eventually(check, timeout=60)
    return job


async def start_running_job(url: str) -> str:
    body = {"name": unique_name("docs-cancel"), "image": BUSYBOX_IMAGE, "command": ["sleep", "60"]}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{url}/jobs", json=body)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["job_id"]
    await job_in(url, job_id, {"running"})
    return job_id


async def substitute(example: Example, stack: Stack) -> tuple[list[str], str | None]:
    """The example's argv as run here, and the job id its placeholder stands for."""
    text = example.text
    base = stack.url
    if "$API_KEY" in text:
        base, text = stack.auth_url, text.replace("$API_KEY", API_KEY)
    elif '"notifications"' in text:
        base = stack.notify_url
    text = text.replace(GUIDE_URL, base)
    if re.search(r"-X POST \S+/jobs\s", text):
        text = re.sub(r'("name": ")([^"]+)"', rf'\1\2-{uuid.uuid4().hex[:8]}"', text)
        text = text.replace('"image": "busybox"', f'"image": "{BUSYBOX_IMAGE}"')
    job_id = None
    if RUN_ID.search(text):
        assert stack.finished_run, f"{example}: no finished run (the README walk-through) yet"
        job_id, run_id = stack.finished_run
        text = RUN_ID.sub(run_id, text)
    elif PLACEHOLDER_ID in text and "/cancel" in text:
        job_id = await start_running_job(stack.url)
    elif PLACEHOLDER_ID in text and stack.page_job:
        job_id = stack.page_job
        if "/logs" in text:  # the reader watched the status until the run started
            await job_in(stack.url, job_id, {"running", "retrying", "completed", "failed"})
    elif PLACEHOLDER_ID in text:
        job_id = await new_job(stack.url)
    if job_id:
        text = text.replace(PLACEHOLDER_ID, job_id)
    return shlex.split(text, comments=True), job_id


async def run_curl(argv: list[str]) -> tuple[int, str]:
    argv = [*argv, "-sS", "--max-time", "60", "-w", "\n%{http_code}"]
    result = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True)
    assert result.returncode == 0, (argv, result.stderr)
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


async def run_page(page: Path, stack: Stack) -> None:
    """Run the page's examples in order."""
    stack.page_job = None
    for example in curl_examples(page):
        if any(part in example.text for part in NOT_RUN):
            continue
        argv, job_id = await substitute(example, stack)
        status, body = await run_curl(argv)
        assert status == expected_status(example.text), (str(example), status, body)
        created = json.loads(body) if status == 201 else None
        if created and created["schedule"] is None:
            stack.page_job = created["job_id"]
            if created["image"] == BUSYBOX_IMAGE:
                stack.one_off_jobs.append(created["job_id"])
        if job_id and "follow=true" in example.text:
            stack.followed[job_id] = body


@asynccontextmanager
async def live_variant(settings: BaseSettings, **overrides: Any) -> AsyncIterator[str]:
    """Another live API on the suite's database and Temporal, with some settings changed."""
    varied = type(settings).model_validate({**settings.model_dump(), **overrides})
    async with live_server(varied) as url:
        yield url


async def finish_one_off_jobs(stack: Stack) -> None:
    """Busybox one-off jobs complete, and a followed log is the whole log."""
    for job_id in stack.one_off_jobs:
        job = await job_in(stack.url, job_id, {"completed", "failed", "cancelled"})
        assert job["status"] == "completed", job
        if job_id in stack.followed:
            async with httpx.AsyncClient() as client:
                log = (await client.get(f"{stack.url}/jobs/{job_id}/logs")).text
            # A follow announces each attempt that starts while it runs, even a single one.
            followed = ATTEMPT_HEADER.sub("", stack.followed[job_id])
            assert log and followed == ATTEMPT_HEADER.sub("", log), (stack.followed[job_id], log)
    stack.one_off_jobs.clear()


async def test_every_curl_example_runs(live_url: str, settings: BaseSettings) -> None:
    found = [example for page in CURL_PAGES for example in curl_examples(page)]
    assert len(found) == CURL_EXAMPLES, "\n".join(map(str, found))
    for part, reason in NOT_RUN.items():
        assert reason and any(part in example.text for example in found), part
    async with AsyncExitStack() as servers:
        stack = Stack(
            url=live_url,
            auth_url=await servers.enter_async_context(
                live_variant(settings, enable_api_auth=True, api_key=API_KEY)
            ),
            notify_url=await servers.enter_async_context(
                live_variant(
                    settings,
                    slack_bot_token="xoxb-docs-example",
                    slack_channel="#training",
                    smtp_host="127.0.0.1",
                    smtp_from="orchestrator@example.com",
                    smtp_to=["ml-team@example.com"],
                    email_allowed_domains=["example.com"],
                )
            ),
        )
        for page in CURL_PAGES:
            await run_page(page, stack)
            if page.name == "README.md":
                assert stack.page_job, "the README's walk-through creates no one-off job"
                walk_through = stack.page_job
                await finish_one_off_jobs(stack)
                job = await get_job(live_url, walk_through)
                stack.finished_run = (walk_through, job["latest_run_id"])
        await finish_one_off_jobs(stack)
