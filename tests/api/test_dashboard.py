"""The dashboard in real headless Chromium, driven by Selenium and Debian's chromedriver.

Jobs run through the real worker (busybox trainers in Docker). Chromium reaches nothing but
the API (see ``selenium_driver``). Screenshots are kept under ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from api.app import create_app
from api.ui.router import PAGE_POLICY
from core.settings import Settings
from tests.api.selenium_driver import (
    assert_stayed_on_the_host,
    chromium,
    find,
    fits_the_window,
    loopback,
    row_of,
    screenshot,
    serve,
    wait_for,
)
from tests.api.test_run_metrics import progress_trainer, run_trainer
from tests.conftest import eventually, unique_name, wait_for_status


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
        # The latest run's numbers, and both runs drawn (the step axis is a series too).
        assert "25 points, last 60 at step 25" in caption.text
        wait_for(
            driver,
            lambda d: (
                len(d.find_elements(By.CSS_SELECTOR, 'figure[data-metric="loss"] .u-series')) == 3
            ),
            "the earlier run overlaid",
        )
        assert driver.find_element(By.CSS_SELECTOR, "#summary .badge").text == "completed"
        run = row_of(driver, "#runs tbody tr")
        assert run is not None and "exit 0" in run["cells"]["Attempts"]
        assert len(driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 2
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
    first = await run_trainer(api, busybox_image, 25, schedule="0 2 * * *")
    # A second run whose loss falls from higher up: drawn over the first one.
    changed = await api.put(
        f"/jobs/{first['job_id']}", json={"command": progress_trainer(25, scale=1500)}
    )
    assert changed.status_code == 200, changed.text
    assert (await api.post(f"/jobs/{first['job_id']}/trigger")).status_code == 200

    async def second_run_done() -> dict[str, Any] | None:
        job: dict[str, Any] = (await api.get(f"/jobs/{first['job_id']}")).json()
        new_run = job["latest_run_id"] != first["latest_run_id"]
        return job if new_run and job["status"] == "completed" else None

    job = await eventually(second_run_done, timeout=60)
    async with httpx.AsyncClient() as http:
        page = await http.get(f"{loopback(dashboard)}/ui/jobs/{job['job_id']}")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == PAGE_POLICY
    assert "script-src 'self'" in PAGE_POLICY and "unsafe" not in PAGE_POLICY
    await asyncio.to_thread(job_page_scenario, dashboard, job["job_id"])
    assert (await api.get(f"/jobs/{job['job_id']}")).json()["paused"] is True
