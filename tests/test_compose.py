"""The production compose stack, checked with `docker-compose config`.

What is asserted is what `docker-compose` itself makes of the file: the resolved services,
ports, mounts, health checks and restart policies an operator would get from `up`. Nothing can be
pulled here, so the official Temporal and PostgreSQL images are checked only this way; CI starts
the stack for real with deploy/compose.ci.yml (.ci/compose-e2e), and the last test here pins down
that this override changes images and nothing else it does not say.
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

from core.settings import Settings
from notifications.registry import configured_channels
from workflows.models import SEARCH_ATTRIBUTE_NAMES

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
CI_OVERRIDE = ROOT / "deploy" / "compose.ci.yml"
SERVICES = {
    "postgresql",
    "temporal-admin-tools",
    "temporal",
    "temporal-create-namespace",
    "temporal-ui",
    "migrate",
    "orchestrator",
    "worker",
}
ONE_SHOT = {"migrate", "temporal-admin-tools", "temporal-create-namespace"}
WITH_HEALTHCHECK = {"postgresql", "temporal", "orchestrator"}
DOCKER_SOCKET = "/var/run/docker.sock"
# The variables the file requires (`${VAR:?...}`), with values for these tests.
REQUIRED = {"API_KEY": "compose-test-key", "DOCKER_GID": "4242"}
# What CI's override leaves out of its run: the dev server stands in for both.
NOT_RUN_IN_CI = {"temporal-admin-tools", "temporal-ui"}
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
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run with REQUIRED set (and no variable of the caller's that the file reads)."""
    environment = {"PATH": os.environ.get("PATH", ""), **REQUIRED, **(env or {})}
    return subprocess.run(
        args,
        cwd=ROOT,
        input=stdin,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _files(*files: Path) -> list[str]:
    return [arg for file in files for arg in ("-f", str(file))]


def _interpreter_of(script: str) -> str:
    first_line = Path(script).read_text(errors="replace").splitlines()[0]
    if not first_line.startswith("#!") or "python" not in first_line:
        pytest.fail(f"{script} supports neither `config --format json` nor is a Python script")
    return first_line[2:].strip().split()[0]


@cache
def _config(*files: Path) -> dict[str, Any]:
    """The resolved configuration, as JSON from compose v2 or converted from v1's YAML."""
    compose = _docker_compose()
    files = files or (COMPOSE_FILE,)
    as_json = _run(compose, *_files(*files), "config", "--format", "json")
    # Compose v1 answers an unknown option with its usage text and exit status 0.
    if as_json.returncode == 0 and as_json.stdout.lstrip().startswith("{"):
        config: dict[str, Any] = json.loads(as_json.stdout)
        return config
    as_yaml = _run(compose, *_files(*files), "config")
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


def _script(name: str) -> str:
    """A one-shot's shell script (its command after `/bin/sh -c`)."""
    service = _service(name)
    assert service["entrypoint"] == ["/bin/sh", "-c"], name
    return " ".join(service["command"])


def _tag(image: str) -> str:
    return image.rpartition(":")[2]


def test_compose_file_is_valid() -> None:
    result = _run(_docker_compose(), *_files(COMPOSE_FILE), "config", "-q")
    assert result.returncode == 0, result.stderr


def test_stack_has_every_service() -> None:
    assert set(_config()["services"]) == SERVICES


def test_api_publishes_8000_and_listens_on_all_interfaces() -> None:
    orchestrator = _service("orchestrator")
    assert 8000 in _published_ports(orchestrator)
    assert orchestrator["environment"]["API_HOST"] == "0.0.0.0"
    assert orchestrator["command"] == ["python", "-m", "api"]


@pytest.mark.parametrize("variable", sorted(REQUIRED))
def test_the_stack_does_not_start_without_its_required_variables(variable: str) -> None:
    result = _run(_docker_compose(), *_files(COMPOSE_FILE), "config", "-q", env={variable: ""})
    assert result.returncode != 0
    assert f"set {variable}" in result.stderr, result.stderr


def test_the_api_requires_the_key() -> None:
    environment = _service("orchestrator")["environment"]
    assert environment["ENABLE_API_AUTH"] == "true"
    assert environment["API_KEY"] == REQUIRED["API_KEY"]
    # Named keys and the rate limit reach the API too; neither is set by default.
    assert environment["API_KEYS"] == ""
    assert environment["RATE_LIMIT_PER_MINUTE"] == "0"


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


def test_worker_runs_as_the_images_user_in_the_sockets_group() -> None:
    worker = _service("worker")
    # No `user:` here: the Dockerfile's non-root user (uid 10001) runs it.
    assert "user" not in worker
    assert [str(group) for group in worker["group_add"]] == [REQUIRED["DOCKER_GID"]]
    assert "USER orchestrator" in (ROOT / "Dockerfile").read_text()


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


def test_temporals_schemas_are_created_and_migrated_before_the_server_starts() -> None:
    setup = _service("temporal-admin-tools")
    assert setup["image"].startswith("temporalio/admin-tools:")
    assert setup["depends_on"]["postgresql"]["condition"] == "service_healthy"
    script = _script("temporal-admin-tools")
    assert "temporal-sql-tool --plugin postgres12 --ep postgresql" in script
    for database, schema in (("temporal", "temporal"), ("temporal_visibility", "visibility")):
        for step in ("create", "setup-schema -v 0.0", "update-schema -d"):
            assert f"--db {database} {step}" in script, (database, step)
        assert f"/{schema}/versioned" in script, schema
    server = _service("temporal")
    assert server["depends_on"]["temporal-admin-tools"]["condition"] == (
        "service_completed_successfully"
    )
    assert server["environment"]["DB"] == "postgres12"
    assert server["environment"]["POSTGRES_SEEDS"] == "postgresql"


def test_the_server_reads_its_committed_dynamic_config() -> None:
    server = _service("temporal")
    path = Path(server["environment"]["DYNAMIC_CONFIG_FILE_PATH"])
    mounts = _bind_mounts(server)
    (mounted,) = [target for target in mounts if path.is_relative_to(target)]
    on_host = Path(mounts[mounted]) / path.relative_to(mounted)
    assert on_host.is_file() and on_host.is_relative_to(ROOT), on_host


def test_temporal_images_are_current_and_of_one_release() -> None:
    server, setup, registration = (
        _service(name)["image"]
        for name in ("temporal", "temporal-admin-tools", "temporal-create-namespace")
    )
    assert server.startswith("temporalio/server:"), server  # not the deprecated auto-setup
    assert setup == registration == f"temporalio/admin-tools:{_tag(server)}"
    assert _service("temporal-ui")["image"].startswith("temporalio/ui:")


def test_migrations_and_search_attributes_come_before_api_and_worker() -> None:
    for name in ("orchestrator", "worker"):
        depends_on = _service(name)["depends_on"]
        for one_shot in ("migrate", "temporal-create-namespace"):
            assert depends_on[one_shot]["condition"] == "service_completed_successfully"
    assert _service("migrate")["command"] == ["python", "-m", "store.migrate"]
    registration = _service("temporal-create-namespace")
    assert registration["depends_on"]["temporal"]["condition"] == "service_healthy"
    script = _script("temporal-create-namespace")
    assert "temporal operator namespace create --namespace default" in script
    assert "search-attribute create" in script
    for attribute in SEARCH_ATTRIBUTE_NAMES:
        assert attribute in script


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


def test_api_and_worker_get_every_notification_channel_off_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("orchestrator", "worker"):
        environment = _service(name)["environment"]
        for variable in ("SLACK_WEBHOOK_URL", "SMTP_HOST", "WEBHOOK_URL", "WEBHOOK_SECRET"):
            assert variable in environment, (name, variable)
            assert not environment[variable], (name, variable)
        # What the process makes of them: valid settings, with no channel turned on.
        for variable, value in environment.items():
            monkeypatch.setenv(variable, value or "")
        settings = Settings(_env_file=None)
        assert settings.webhook_url is None and settings.webhook_secret is None
        assert configured_channels(settings) == [], name


def _without_image(service: dict[str, Any]) -> dict[str, Any]:
    """The service without its image; volumes as a set (merging files reorders them)."""
    rest = {key: value for key, value in service.items() if key != "image"}
    if "volumes" in rest:
        rest["volumes"] = {json.dumps(volume, sort_keys=True) for volume in rest["volumes"]}
    return rest


def test_the_ci_override_swaps_images_and_nothing_else() -> None:
    production = _config()["services"]
    ci = _config(COMPOSE_FILE, CI_OVERRIDE)["services"]
    assert set(ci) == set(production)
    for name, service in ci.items():
        assert service["image"].startswith("orchestrator-ci/"), name  # built on the host
        changed = _without_image(service)
        if name in NOT_RUN_IN_CI:
            assert changed.pop("scale") == 0, name
        if name == "temporal":  # the dev server's database, so that it outlives `down`
            (database,) = [volume for volume in changed["volumes"] if "temporal-dev-data" in volume]
            changed["volumes"].remove(database)
        assert changed == _without_image(production[name]), name
