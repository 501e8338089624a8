"""The API never serves beyond this host without keys, unless told so in as many words."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.exposure import exposure_problem, exposure_warning, is_loopback
from core.settings import Settings

KEY = "exposure-test-key-0123456789"


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "api.example.com"])
def test_other_hosts(host: str, tmp_path: Path) -> None:
    assert not is_loopback(host)
    problem = exposure_problem(settings(tmp_path, api_host=host))
    assert problem and "ALLOW_UNAUTHENTICATED=true" in problem and host in problem
    assert exposure_problem(settings(tmp_path, api_host=host, allow_unauthenticated=True)) is None
    assert exposure_warning(settings(tmp_path, api_host=host, allow_unauthenticated=True))
    secured = settings(tmp_path, api_host=host, enable_api_auth=True, api_key=KEY)
    assert exposure_problem(secured) is None and exposure_warning(secured) is None


def test_python_m_api_refuses_to_start(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("API_", "ENABLE_", "ALLOW_"))},
        "API_HOST": "0.0.0.0",
        "DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "api"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "refusing to serve on API_HOST=0.0.0.0" in result.stderr + result.stdout
