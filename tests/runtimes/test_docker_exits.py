"""How a container ended, as DockerRuntime.exit_details reads it from the real engine.

137 is what an out-of-memory kill, a stop at the time limit and an engine's restart all
report; exit_details tells them apart (the engine restart itself is in
tests/faults/test_engine_restart.py, on an engine of that test's own).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import docker
import pytest

from core.settings import Settings
from runtimes.base import (
    LABEL_JOB_ID,
    ContainerSpec,
    RuntimeUnavailableError,
    incarnation_of,
    unit_name,
)
from runtimes.docker import DockerRuntime
from runtimes.docker_state import memory_text, parse_time
from runtimes.factory import build_runtime

# The pause: Docker's OOM watch on a container starts just after it does, and an OOM within
# that instant (on a busy host) goes unnoticed; real trainers load for longer than that.
GREEDY = 'sleep 1; x=$(head -c 200000000 /dev/zero | tr "\\0" x)'


@pytest.fixture
def job_id() -> Iterator[str]:
    job = f"test-{uuid.uuid4().hex[:10]}"
    yield job
    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"label": f"{LABEL_JOB_ID}={job}"}):
        container.remove(force=True)
    client.close()


def spec_of(job_id: str, image: str, script: str, attempt: int, **fields: object) -> ContainerSpec:
    return ContainerSpec(
        name=unit_name(job_id, "run:1", attempt),
        job_id=job_id,
        run_id="run:1",
        attempt=attempt,
        image=image,
        command=["sh", "-c", script],
        **fields,  # type: ignore[arg-type]
    )


async def test_out_of_memory_is_told_from_other_kills(job_id: str, busybox_image: str) -> None:
    runtime = DockerRuntime(network_mode="none")
    greedy = spec_of(job_id, busybox_image, GREEDY, 1, resources={"memory": "64m"})
    stopped = spec_of(job_id, busybox_image, "trap '' TERM; sleep 60 & wait", 2)
    failed = spec_of(job_id, busybox_image, "exit 3", 3)
    for spec in (greedy, stopped, failed):
        await runtime.start(spec)
    assert await runtime.wait(greedy.name, 60) == 137
    assert await runtime.stop(stopped.name, grace_seconds=0.5) == 137
    assert await runtime.wait(failed.name, 30) == 3

    oom = await runtime.exit_details(greedy.name)
    assert (oom.code, oom.oom_killed, oom.memory_limit) == (137, True, "64m")
    assert not oom.killed_by_engine_restart
    killed = await runtime.exit_details(stopped.name)
    assert (killed.code, killed.oom_killed, killed.memory_limit) == (137, False, None)
    # The engine has run all along: the kill was someone's stop, not a restart.
    assert not killed.killed_by_engine_restart
    assert not (await runtime.exit_details(failed.name)).killed_by_engine_restart


async def test_exit_details_of_a_running_container_are_not_known(
    job_id: str, busybox_image: str
) -> None:
    runtime = DockerRuntime(network_mode="none")
    spec = spec_of(job_id, busybox_image, "sleep 30", 1)
    await runtime.start(spec)
    with pytest.raises(LookupError):
        await runtime.exit_details(spec.name)


async def test_docker_host_setting_chooses_the_engine(settings: Settings) -> None:
    local = settings.model_copy(update={"docker_host": "unix:///nonexistent/orch-test.sock"})
    with pytest.raises(RuntimeUnavailableError, match="/nonexistent/orch-test.sock"):
        await build_runtime(local).list_units()


def test_incarnations_get_their_own_names() -> None:
    first = unit_name("train-1", "train-1-2025", 1)
    assert unit_name("train-1", "train-1-2025", 1, 1) == first
    assert unit_name("train-1", "train-1-2025", 1, 2) == f"{first}-i2"
    assert incarnation_of({}) == 1  # units started before incarnations existed
    assert incarnation_of({"io.training-orchestrator.incarnation": "3"}) == 3


def test_docker_times_and_memory_limits_are_read() -> None:
    assert parse_time("2026-11-30T10:38:02.477206598Z") == datetime(
        2026, 11, 30, 10, 38, 2, 477206, tzinfo=UTC
    )
    assert parse_time("2026-11-30T10:38:02Z") == datetime(2026, 11, 30, 10, 38, 2, tzinfo=UTC)
    assert parse_time("0001-01-01T00:00:00Z") is None  # never started
    assert [memory_text(n) for n in (64 << 20, 2 << 30, 1536, 1000, 0, None)] == [
        "64m",
        "2g",
        "1536b",
        "1000b",
        None,
        None,
    ]
