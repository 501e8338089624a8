"""The dashboard in real headless Chromium, driven by Selenium and Debian's chromedriver.

Jobs run through the real worker (busybox trainers in Docker). Chromium reaches nothing but
the API, opened as ``http://orchestrator.test`` (mapped to 127.0.0.1); every other name fails
to resolve. Selenium is synchronous, so each browser scenario runs in a thread while this
event loop serves the API. Screenshots are kept under ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from api.app import create_app
from api.ui.router import PAGE_POLICY
from core.settings import Settings
from tests.api.test_browser import API_HOST, ARTIFACTS, CHROMIUM, OFFLINE
from tests.api.test_run_metrics import progress_trainer, run_trainer
from tests.conftest import free_port, unique_name, wait_for_status

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
API_KEY = "dashboard-key"
WAIT = 40


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-features=AutofillServerCommunication",
        f"--window-size={width},{height}",
        *OFFLINE,
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, check: Callable[[WebDriver], Any], what: str) -> Any:
    # The pages redraw their rows at every poll: an element found a moment ago may be gone.
    waiting = WebDriverWait(
        driver, WAIT, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
    )
    return waiting.until(check, message=what)


def row_of(driver: WebDriver, selector: str) -> dict[str, Any] | None:
    """A table row's text, per cell label and in whole, read at one instant."""
    found: dict[str, Any] | None = driver.execute_script(
        """
        const row = document.querySelector(arguments[0]);
        if (!row) return null;
        const cells = {};
        for (const cell of row.querySelectorAll("td")) cells[cell.dataset.label] = cell.innerText;
        const bar = row.querySelector("progress");
        const link = row.querySelector("a");
        return {
          text: row.innerText, cells, badge: row.querySelector(".badge").textContent,
          progress: bar ? bar.value : null, href: link ? link.href : null,
        };
        """,
        selector,
    )
    return found


def find(driver: WebDriver, css: str) -> WebElement | None:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0] if found else None


def screenshot(driver: WebDriver, name: str, *, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    size = driver.get_window_size()
    if full_page:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(size["width"], min(int(height) + 140, 6000))
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])
    assert path.stat().st_size > 10_000, f"{path} is too small to show a rendered page"


def assert_stayed_on_the_host(driver: WebDriver, origin: str) -> None:
    """Every resource came from the API's origin, and no policy violation was reported."""
    urls = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(url.startswith(f"{origin}/") for url in urls), urls
    problems = [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE"
        and ("Content Security Policy" in entry["message"] or "Uncaught" in entry["message"])
    ]
    assert not problems, problems


def fits_the_window(driver: WebDriver) -> bool:
    """No sideways scrolling, and every chart as narrow as its figure."""
    return bool(
        driver.execute_script(
            """
            const charts = [...document.querySelectorAll("figure.chart")];
            return document.documentElement.scrollWidth <= window.innerWidth + 1 &&
              charts.every((f) => f.querySelector(".uplot").offsetWidth <= f.clientWidth + 1);
            """
        )
    )


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """The app on a free loopback port in this event loop; its URL under the test host name."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield f"http://{API_HOST}:{port}"
    finally:
        server.should_exit = True
        await task


def loopback(url: str) -> str:
    return url.replace(API_HOST, "127.0.0.1")


@pytest.fixture(scope="module")
async def dashboard(settings: Settings, worker: None) -> AsyncIterator[str]:
    async with serve(create_app(settings)) as url:
        yield url


def jobs_page_scenario(url: str, marker: str, done_id: str, running_id: str) -> None:
    with chromium() as driver:
        driver.get(f"{url}/ui")
        search = wait_for(driver, lambda d: find(d, "#search"), "the search box")
        search.send_keys(marker)
        wait_for(
            driver,
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")) == 2,
            "only the two jobs named like the search",
        )
        done = row_of(driver, f'tr[data-job-id="{done_id}"]')
        assert done is not None and done["badge"] == "completed"
        assert "completed" in done["cells"]["Last run"]
        assert "25 / 25" in done["cells"]["Progress"]
        running = wait_for(
            driver,
            lambda d: (
                (row := row_of(d, f'tr[data-job-id="{running_id}"]'))
                and "ETA" in row["text"]
                and row
            ),
            "the running job with its progress and ETA",
        )
        assert running["badge"] == "running"
        assert 0 < running["progress"] < 100
        # The search is in the page's address, so a reload or a shared link keeps it.
        wait_for(driver, lambda d: f"?q={marker}" in d.current_url, "the search in the address")
        # The status filter, with the counts of /stats.
        status = driver.find_element(By.CSS_SELECTOR, "#status")
        status.send_keys("Running")
        wait_for(
            driver,
            lambda d: (
                [
                    r.get_attribute("data-job-id")
                    for r in d.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")
                ]
                == [running_id]
            ),
            "the status filter",
        )
        status.send_keys(Keys.HOME)
        wait_for(
            driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")) == 2, "all"
        )
        screenshot(driver, "dashboard-jobs")
        assert_stayed_on_the_host(driver, url)
        driver.set_window_size(390, 844)
        wait_for(driver, fits_the_window, "a page as wide as a phone")
        screenshot(driver, "dashboard-jobs-phone")


async def test_the_jobs_page_lists_filters_and_searches(
    dashboard: str, api: httpx.AsyncClient, busybox_image: str
) -> None:
    marker = unique_name("dash")
    done = await run_trainer(api, busybox_image, 25, name=f"{marker}-finished")
    created = await api.post(
        "/jobs",
        json={
            "name": f"{marker}-running",
            "image": busybox_image,
            "command": progress_trainer(400, pause=0.5),
        },
    )
    running_id = created.json()["job_id"]
    await wait_for_status(api, running_id, {"running"})
    try:
        await asyncio.to_thread(jobs_page_scenario, dashboard, marker, done["job_id"], running_id)
    finally:
        await api.post(f"/jobs/{running_id}/cancel")


def job_page_scenario(url: str, job_id: str) -> None:
    with chromium(1280, 1000) as driver:
        driver.get(f"{url}/ui/jobs/{job_id}")
        chart = wait_for(
            driver, lambda d: find(d, 'figure.chart[data-metric="loss"] canvas'), "the loss chart"
        )
        assert chart.size["width"] > 300
        caption = driver.find_element(
            By.CSS_SELECTOR, 'figure.chart[data-metric="loss"] figcaption'
        )
        assert "25 points" in caption.text and "at step 25" in caption.text
        assert driver.find_element(By.CSS_SELECTOR, "#summary .badge").text == "completed"
        run = row_of(driver, "#runs tbody tr")
        assert run is not None and "exit 0" in run["cells"]["Attempts"]
        assert len(driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 1
        assert "/namespaces/default/workflows/" in run["href"].replace("%2F", "/")
        wait_for(driver, lambda d: "trained" in d.find_element(By.ID, "log").text, "the log")
        assert "0 2 * * *" in driver.find_element(By.ID, "spec").text
        screenshot(driver, "dashboard-job", full_page=True)

        # Pause, with the keyboard: the dialog's default is the safe answer, Escape too.
        pause = driver.find_element(By.CSS_SELECTOR, 'button[data-action="pause"]')
        pause.send_keys(Keys.ENTER)
        dialog = wait_for(driver, lambda d: find(d, "dialog#confirm[open]"), "the confirmation")
        assert "Pause the schedule" in dialog.text
        assert driver.switch_to.active_element.get_attribute("id") == "confirm-no"
        driver.switch_to.active_element.send_keys(Keys.ESCAPE)
        wait_for(driver, lambda d: not find(d, "dialog#confirm[open]"), "the dialog to close")
        assert not find(driver, "#summary .badge.paused")
        pause.click()
        wait_for(driver, lambda d: find(d, "dialog#confirm[open]"), "the confirmation again")
        screenshot(driver, "dashboard-confirm")
        driver.find_element(By.ID, "confirm-yes").click()
        wait_for(driver, lambda d: find(d, "#summary .badge.paused"), "the paused badge")
        wait_for(
            driver,
            lambda d: (
                d.find_element(By.CSS_SELECTOR, 'button[data-action="resume"]').is_displayed()
                and not d.find_element(
                    By.CSS_SELECTOR, 'button[data-action="pause"]'
                ).is_displayed()
            ),
            "Resume in place of Pause",
        )
        assert "paused" in driver.find_element(By.ID, "message").text
        job = httpx.get(f"{loopback(url)}/jobs/{job_id}").json()
        assert job["paused"] is True
        assert_stayed_on_the_host(driver, url)

        driver.set_window_size(390, 844)
        wait_for(driver, fits_the_window, "a page as wide as a phone")
        screenshot(driver, "dashboard-job-phone", full_page=True)


async def test_the_job_page_charts_a_run_and_pauses_its_schedule(
    dashboard: str, api: httpx.AsyncClient, busybox_image: str
) -> None:
    job = await run_trainer(api, busybox_image, 25, schedule="0 2 * * *")
    async with httpx.AsyncClient() as http:
        page = await http.get(f"{loopback(dashboard)}/ui/jobs/{job['job_id']}")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == PAGE_POLICY
    assert "script-src 'self'" in PAGE_POLICY and "unsafe" not in PAGE_POLICY
    await asyncio.to_thread(job_page_scenario, dashboard, job["job_id"])
    assert (await api.get(f"/jobs/{job['job_id']}")).json()["paused"] is True
