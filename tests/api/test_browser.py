"""Real headless Chromium: the API docs render offline, and the Temporal Web UI shows a run.

Chromium reaches nothing beyond loopback: the API is opened as ``http://orchestrator.test``
(mapped to 127.0.0.1, so pages behave as they would for a real host name, not as on
localhost), every other name fails to resolve and every other address goes to a proxy that
does not exist. Chromium's network log then shows what the pages tried to load. Screenshots
are kept under ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from core.settings import Settings
from jobs.temporal import SEARCH_ATTRIBUTES
from store.migrate import upgrade
from tests.conftest import (
    TEMPORAL_CLI,
    api_client,
    free_port,
    live_server,
    make_settings,
    unique_name,
    wait_for_status,
)
from worker import build_worker

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
API_HOST = "orchestrator.test"
TEMPORAL_NEWS_FEED = "newsfeed.temporal.io"
CHROMIUM_TIMEOUT = 90
OFFLINE = [
    f"--host-resolver-rules=MAP {API_HOST} 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
    f"--proxy-bypass-list={API_HOST}",
]


async def chromium(url: str, profile: Path, *mode: str) -> str:
    """Run headless Chromium on ``url`` once; its stdout (the DOM with ``--dump-dom``)."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install chromium"
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # root in CI
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # Chromium's own form-field lookups (Google's autofill service), not the page's.
        "--disable-features=AutofillServerCommunication",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
        # Virtual time: the page's timers and fetches run until it is idle, up to 10 s.
        "--virtual-time-budget=10000",
        *OFFLINE,
        *mode,
        url,
    ]
    out, err = profile.with_suffix(".stdout"), profile.with_suffix(".stderr")
    # Files, not pipes: a helper process outliving the browser would hold a pipe open.
    with out.open("w") as stdout, err.open("w") as stderr:
        browser = subprocess.Popen(argv, stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        code = await asyncio.to_thread(browser.wait, CHROMIUM_TIMEOUT)
    except subprocess.TimeoutExpired as timeout:
        raise AssertionError(
            f"Chromium did not finish {url} in {CHROMIUM_TIMEOUT} s: {err.read_text()[-3000:]}"
        ) from timeout
    finally:
        # The browser's own session: whatever it left running goes with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, signal.SIGKILL)
        browser.wait()
    assert code == 0, err.read_text()[-3000:]
    return out.read_text()


async def render(url: str, tmp_path: Path, screenshot: str) -> tuple[str, set[str]]:
    """The DOM after the page's scripts ran and the URLs the page requested.

    Chromium does one of dumping and screenshotting per run, so a second run saves
    ``test-artifacts/<screenshot>.png``.
    """
    net_log = tmp_path / f"{screenshot}.netlog.json"
    profile = tmp_path / "profile"
    dom = await chromium(url, profile, "--dump-dom", f"--log-net-log={net_log}")
    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / f"{screenshot}.png"
    png.unlink(missing_ok=True)
    await chromium(url, profile, f"--screenshot={png}")
    assert png.stat().st_size > 10_000, f"{png} is too small to show a rendered page"
    return dom, requested_urls(net_log, site_of(url))


def site_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def requested_urls(net_log: Path, site: str) -> set[str]:
    """URLs requested for pages of ``site``, read from a Chromium NetLog.

    The browser's own traffic (update checks and the like, refused here anyway) is told apart
    by the network isolation key, which names the site of the page a request is made for.
    """
    text = net_log.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # cut short at exit: close the event list
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    starts = [event.get("params", {}) for event in log["events"] if event["type"] == start_job]
    return {
        params["url"]
        for params in starts
        if params.get("network_isolation_key", "").startswith(f"{site} ")
    }


class _AssetTags(HTMLParser):
    """Collects the URLs of script and link tags."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def asset_urls(html: str, page: str) -> list[str]:
    parser = _AssetTags()
    parser.feed(html)
    return [urljoin(page, url) for url in parser.urls]


def off_host(urls: set[str] | list[str], origin: str) -> list[str]:
    return sorted(url for url in urls if origin_of(url) != origin)


@pytest.fixture(scope="module")
async def live_url(settings: Settings, worker: None) -> AsyncIterator[str]:
    """The API under a non-loopback name, so that Swagger UI behaves as in production."""
    async with live_server(settings) as url:
        yield url.replace("127.0.0.1", API_HOST)


async def page_and_assets(url: str) -> tuple[httpx.Response, list[str]]:
    """The page as served (fetched over loopback) and its script and stylesheet URLs."""
    loopback = url.replace(API_HOST, "127.0.0.1")
    async with httpx.AsyncClient() as http:
        page = await http.get(loopback)
        assert page.status_code == 200
        assets = asset_urls(page.text, url)
        for asset in assets:
            answer = await http.get(asset.replace(API_HOST, "127.0.0.1"))
            assert answer.status_code == 200, asset
    return page, assets


async def test_swagger_ui_shows_the_operations_offline(live_url: str, tmp_path: Path) -> None:
    page, assets = await page_and_assets(f"{live_url}/docs")
    assert assets and not off_host(assets, live_url), assets
    assert "cdn" not in page.text.lower()

    dom, requested = await render(f"{live_url}/docs", tmp_path, "swagger-ui")
    assert dom.count('class="opblock ') >= 8, "Swagger UI rendered no operations"
    for path in ("/jobs/{job_id}/retry", "/jobs/{job_id}/cancel", "/metrics", "/health"):
        assert f'data-path="{path}"' in dom, f"operation {path} not shown"
    assert f"{live_url}/openapi.json" in requested
    # No validator badge either: it would send the schema's URL to validator.swagger.io.
    assert not off_host(requested, live_url)
    assert not off_host(asset_urls(dom, live_url), live_url)


async def test_redoc_renders_offline(live_url: str, tmp_path: Path) -> None:
    page, assets = await page_and_assets(f"{live_url}/redoc")
    assert assets and not off_host(assets, live_url), assets
    assert "fonts.googleapis" not in page.text
    # ReDoc's sidebar shows Redocly's logo from their CDN; this policy keeps it unasked.
    assert page.headers["content-security-policy"] == "img-src 'self' data:"

    dom, requested = await render(f"{live_url}/redoc", tmp_path, "redoc")
    assert "redoc-wrap" in dom, "ReDoc did not render"
    assert "Training Job Orchestrator" in dom
    assert "/jobs/{job_id}/retry" in dom
    assert f"{live_url}/openapi.json" in requested
    assert not off_host(requested, live_url)


@pytest.fixture
def page_with_a_cdn_script(tmp_path: Path) -> Iterator[str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        '<html><head><script src="https://cdn.example.com/lib.js"></script></head>'
        "<body>a page that needs the internet</body></html>"
    )
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


async def test_the_network_log_catches_an_off_host_asset(
    page_with_a_cdn_script: str, tmp_path: Path
) -> None:
    """The check above would fail for a page that loads from a CDN (it is not vacuous)."""
    net_log = tmp_path / "netlog.json"
    dom = await chromium(
        page_with_a_cdn_script, tmp_path / "profile", "--dump-dom", f"--log-net-log={net_log}"
    )
    assert "a page that needs the internet" in dom
    requested = requested_urls(net_log, site_of(page_with_a_cdn_script))
    assert off_host(requested, origin_of(page_with_a_cdn_script)) == [
        "https://cdn.example.com/lib.js"
    ]


@pytest.fixture(scope="module")
async def ui_env() -> AsyncIterator[tuple[WorkflowEnvironment, str]]:
    """A dev server of its own, with the Temporal Web UI on a free port."""
    ui_port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL_CLI,
        ui=True,
        ui_port=ui_port,
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    try:
        yield env, f"http://127.0.0.1:{ui_port}"
    finally:
        await env.shutdown()


async def test_temporal_ui_shows_a_jobs_run(
    ui_env: tuple[WorkflowEnvironment, str], tmp_path: Path
) -> None:
    env, ui = ui_env
    settings = make_settings(env.client, tmp_path, task_queue="tests-browser", runtime="process")
    await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
    async with build_worker(settings, env.client) as worker, worker:
        async with api_client(settings) as api:
            body = {
                "name": unique_name("browser"),
                "image": "local-process",
                "command": ["/usr/bin/busybox", "true"],
            }
            created = await api.post("/jobs", json=body)
            assert created.status_code == 201, created.text
            job_id = created.json()["job_id"]
            done = await wait_for_status(api, job_id, {"completed", "failed"})
    assert done["status"] == "completed", done
    run_id = done["latest_run_id"]

    page = f"{ui}/namespaces/default/workflows/{run_id}"
    dom, requested = await render(page, tmp_path, "temporal-ui-run")
    assert run_id in dom, "the run's page does not name the run"
    assert "TrainingJobWorkflow" in dom
    assert "completed" in dom.lower()
    assert any(url.startswith(f"{ui}/api/v1/namespaces/default/workflows/") for url in requested)
    # The UI (Temporal's, not ours) asks for its news feed; refused here, the page does without.
    assert {urlsplit(url).hostname for url in off_host(requested, ui)} <= {TEMPORAL_NEWS_FEED}
