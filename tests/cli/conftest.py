"""An API with authentication on, for the CLI tests that need a key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.settings import Settings
from tests.conftest import live_server

API_KEY = "k"


@pytest.fixture(scope="module")
async def auth_url(settings: Settings, worker: None) -> AsyncIterator[str]:
    secured = Settings.model_validate(
        {**settings.model_dump(), "enable_api_auth": True, "api_key": API_KEY}
    )
    async with live_server(secured) as url:
        yield url
