"""The production compose stack, checked with `docker-compose config` (nothing can be pulled here).

What is asserted is what `docker-compose` itself makes of the file: the resolved services,
ports, mounts, health checks and restart policies an operator would get from `up`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from workflows.models import SEARCH_ATTRIBUTE_NAMES

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = {
    "postgresql",
    "temporal",
    "temporal-admin-tools",
    "temporal-ui",
    "migrate",
    "orchestrator",
    "worker",
}
ONE_SHOT = {"migrate", "temporal-admin-tools"}
WITH_HEALTHCHECK = {"postgresql", "temporal", "orchestrator"}
DOCKER_SOCKET = "/var/run/docker.sock"
# The stack refuses to start without API_KEY; the tests give one, as an operator must.
COMPOSE_API_KEY = "compose-test-key-0123456789"
# Compose v1 (Debian's package) is a Python program built on PyYAML; its interpreter turns the
# YAML that `config` prints into JSON, so the test suite needs no YAML library of its own.
_YAML_TO_JSON = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"


def _docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        pytest.fail(
            "docker-compose is not installed: install Debian's `docker-compose` package "
            "(apt-get install docker-compose)"
        )
    return path


def _run(
    *args: str, stdin: str | None = None, api_key: str | None = COMPOSE_API_KEY
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "API_KEY"}
    if api_key is not None:
        env["API_KEY"] = api_key
    return subprocess.run(
        args,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def _interpreter_of(script: str) -> str:
    first_line = Path(script).read_text(errors="replace").splitlines()[0]
    if not first_line.startswith("#!") or "python" not in first_line:
        pytest.fail(f"{script} supports neither `config --format json` nor is a Python script")
    return first_line[2:].strip().split()[0]


@cache
def _config() -> dict[str, Any]:
    """The resolved configuration, as JSON from compose v2 or converted from v1's YAML."""
    compose = _docker_compose()
    as_json = _run(compose, "-f", str(COMPOSE_FILE), "config", "--format", "json")
    # Compose v1 answers an unknown option with its usage text and exit status 0.
    if as_json.returncode == 0 and as_json.stdout.lstrip().startswith("{"):
        config: dict[str, Any] = json.loads(as_json.stdout)
        return config
    as_yaml = _run(compose, "-f", str(COMPOSE_FILE), "config")
    assert as_yaml.returncode == 0, as_yaml.stderr
    converted = _run(_interpreter_of(compose), "-c", _YAML_TO_JSON, stdin=as_yaml.stdout)
    assert converted.returncode == 0, converted.stderr
    config = json.loads(converted.stdout)
    return config


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _config()["services"][name]
    return service


def _bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of every bind mount, in v1's short or v2's long form."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        if source.startswith("/"):
            mounts[target] = source
    return mounts


def _published_ports(service: dict[str, Any]) -> set[int]:
    published = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            published.add(int(port["published"]))
        else:  # [ip:]published:target[/proto]
            published.add(int(str(port).split("/")[0].split(":")[-2]))
    return published


def test_compose_file_is_valid() -> None:
    result = _run(_docker_compose(), "-f", str(COMPOSE_FILE), "config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_requires_an_api_key_and_turns_auth_on() -> None:
    without = _run(_docker_compose(), "-f", str(COMPOSE_FILE), "config", "-q", api_key=None)
    assert without.returncode != 0
    assert "API_KEY" in without.stderr
    environment = _service("orchestrator")["environment"]
    assert environment["ENABLE_API_AUTH"] == "true"
    assert environment["API_KEY"] == COMPOSE_API_KEY


def test_stack_has_every_service() -> None:
    assert set(_config()["services"]) == SERVICES


def test_api_publishes_8000_and_listens_on_all_interfaces() -> None:
    orchestrator = _service("orchestrator")
    assert 8000 in _published_ports(orchestrator)
    assert orchestrator["environment"]["API_HOST"] == "0.0.0.0"
    assert orchestrator["command"] == ["python", "-m", "api"]


def test_api_and_worker_use_postgresql_and_the_temporal_server() -> None:
    for name in ("orchestrator", "worker", "migrate"):
        environment = _service(name)["environment"]
        assert environment["DATABASE_URL"].startswith("postgresql+asyncpg://"), name
        assert "@postgresql:5432/" in environment["DATABASE_URL"], name
        assert environment["TEMPORAL_ADDRESS"] == "temporal:7233", name


def test_worker_mounts_the_docker_socket() -> None:
    worker = _service("worker")
    assert worker["command"] == ["python", "-m", "worker"]
    assert _bind_mounts(worker).get(DOCKER_SOCKET) == DOCKER_SOCKET


def test_checkpoints_and_logs_are_at_the_same_path_on_host_and_inside() -> None:
    worker = _service("worker")
    environment = worker["environment"]
    mounts = _bind_mounts(worker)
    for variable in ("CHECKPOINT_ROOT", "DATA_DIR"):
        path = Path(environment[variable])
        assert path.is_absolute(), variable
        covering = [target for target in mounts if path.is_relative_to(target)]
        assert covering, f"{variable}={path} is not on a bind mount"
        # The engine resolves bind-mount sources of training containers on the host.
        assert all(mounts[target] == target for target in covering), (variable, mounts)


def test_migrations_and_search_attributes_come_before_api_and_worker() -> None:
    for name in ("orchestrator", "worker"):
        depends_on = _service(name)["depends_on"]
        for one_shot in ONE_SHOT:
            assert depends_on[one_shot]["condition"] == "service_completed_successfully"
    assert _service("migrate")["command"] == ["python", "-m", "store.migrate"]
    registration = " ".join(_service("temporal-admin-tools")["command"])
    assert "search-attribute create" in registration
    for attribute in SEARCH_ATTRIBUTE_NAMES:
        assert attribute in registration


def test_long_running_services_restart_and_are_health_checked() -> None:
    for name in SERVICES - ONE_SHOT:
        assert _service(name).get("restart") == "unless-stopped", name
    for name in WITH_HEALTHCHECK:
        assert _service(name)["healthcheck"]["test"], name
    for name in ONE_SHOT:
        assert _service(name).get("restart", "no") == "no", name


def test_images_are_pinned() -> None:
    for name, service in _config()["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), (name, image)
