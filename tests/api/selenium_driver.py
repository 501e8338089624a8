"""Driving headless Chromium with Selenium for the dashboard's tests.

Debian's chromium and chromedriver; Chromium reaches nothing but the API, opened as
``http://orchestrator.test`` (mapped to 127.0.0.1): every other name fails to resolve and
every other address goes to a proxy that does not exist (the flags of test_browser.py).
Selenium is synchronous: scenarios run in a thread while the test's event loop serves the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.api.test_browser import API_HOST, ARTIFACTS, CHROMIUM, OFFLINE
from tests.conftest import free_port

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
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
