"""The dashboard with the API's authentication on, and with roles from ``GET /whoami``.

The key is asked for once per browser tab, kept in sessionStorage and sent as a header, never
in a URL. The pages themselves are served without a key; the role the real ``/whoami`` gives
the key decides whether the controls show.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from api.app import create_app
from core.settings import Settings
from tests.api.selenium_driver import (
    assert_stayed_on_the_host,
    chromium,
    find,
    screenshot,
    serve,
    wait_for,
)
from tests.conftest import unique_name

API_KEY = "dashboard-key-0123"
VIEWER_KEY = "dashboard-viewer-key-4567"


async def scheduled_job(api: httpx.AsyncClient) -> dict[str, Any]:
    body = {
        "name": unique_name("dash-auth"),
        "image": "trainer:1",
        "command": ["python", "train.py"],
        "schedule": "0 2 * * *",
    }
    created = await api.post("/jobs", json=body)
    assert created.status_code == 201, created.text
    job: dict[str, Any] = created.json()
    return job


def enter_key(driver: Any, key: str) -> None:
    field = wait_for(driver, lambda d: find(d, "dialog#key-dialog[open] #key-input"), "the key")
    field.send_keys(key, Keys.ENTER)


def auth_scenario(url: str, job: dict[str, Any]) -> None:
    with chromium() as driver:
        driver.get(f"{url}/ui?q={job['name']}")
        enter_key(driver, "not-the-key")
        wait_for(
            driver,
            lambda d: (
                "refused" in d.find_element(By.ID, "key-why").text
                and find(d, "dialog#key-dialog[open]")
            ),
            "the key refused and asked for again",
        )
        screenshot(driver, "dashboard-key")
        enter_key(driver, API_KEY)
        wait_for(driver, lambda d: find(d, f'tr[data-job-id="{job["job_id"]}"]'), "the job")
        assert not find(driver, "dialog#key-dialog[open]")
        stored = driver.execute_script("return sessionStorage.getItem('orchestrator.apiKey')")
        assert stored == API_KEY
        assert driver.execute_script("return localStorage.length") == 0
        assert_stayed_on_the_host(driver, url)

        # Another page of the same tab: no question, and the controls (API_KEY is an admin's).
        driver.get(f"{url}/ui/jobs/{job['job_id']}")
        wait_for(driver, lambda d: d.find_element(By.ID, "title").text == job["name"], "title")
        wait_for(driver, lambda d: find(d, 'body[data-role="admin"]'), "the role looked up")
        assert driver.find_element(By.ID, "controls").is_displayed()
        assert not find(driver, "dialog#key-dialog[open]")
        urls = driver.execute_script(
            "return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]"
        )
        assert not [u for u in urls if API_KEY in u], "the key went into a URL"
        assert_stayed_on_the_host(driver, url)


async def test_with_auth_on_the_key_is_asked_once_and_sent_as_a_header(
    settings: Settings, api: httpx.AsyncClient
) -> None:
    job = await scheduled_job(api)
    secured = Settings.model_validate(
        {**settings.model_dump(), "enable_api_auth": True, "api_key": API_KEY}
    )
    async with serve(create_app(secured)) as url:
        await asyncio.to_thread(auth_scenario, url, job)
    assert (await api.delete(f"/jobs/{job['job_id']}")).status_code == 204


def viewer_scenario(url: str, job: dict[str, Any]) -> None:
    with chromium() as driver:
        driver.get(f"{url}/ui/jobs/{job['job_id']}")
        enter_key(driver, VIEWER_KEY)
        wait_for(driver, lambda d: find(d, 'body[data-role="viewer"]'), "the viewer's role")
        wait_for(driver, lambda d: d.find_element(By.ID, "title").text == job["name"], "title")
        assert not driver.find_element(By.ID, "controls").is_displayed()
        buttons = driver.find_elements(By.CSS_SELECTOR, "#controls button")
        assert len(buttons) == 5 and not any(button.is_displayed() for button in buttons)
        # What a viewer may read is all there.
        wait_for(driver, lambda d: "0 2 * * *" in d.find_element(By.ID, "spec").text, "spec")
        screenshot(driver, "dashboard-viewer")


async def test_a_viewer_sees_no_controls(settings: Settings, api: httpx.AsyncClient) -> None:
    job = await scheduled_job(api)
    secured = Settings.model_validate(
        {
            **settings.model_dump(),
            "enable_api_auth": True,
            "api_key": API_KEY,
            "api_keys": f"watcher:viewer:{VIEWER_KEY}",
        }
    )
    async with serve(create_app(secured)) as url:
        await asyncio.to_thread(viewer_scenario, url, job)
    assert (await api.delete(f"/jobs/{job['job_id']}")).status_code == 204


async def test_the_pages_are_served_without_a_key_and_the_data_is_not(
    settings: Settings,
) -> None:
    secured = Settings.model_validate(
        {**settings.model_dump(), "enable_api_auth": True, "api_key": API_KEY}
    )
    transport = httpx.ASGITransport(app=create_app(secured))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for page in ("/ui", "/ui/jobs/train-00000000", "/ui/static/common.js"):
            assert (await client.get(page)).status_code == 200, page
        for data in ("/jobs", "/whoami", "/stats"):
            refused = await client.get(data)
            assert refused.status_code == 401, data
            assert refused.json()["error_type"] == "AuthenticationError"
        me = await client.get("/whoami", headers={"X-API-Key": API_KEY})
        assert me.status_code == 200
        assert me.json()["role"] == "admin"
