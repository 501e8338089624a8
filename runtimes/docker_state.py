"""Reading how a container ended from what the Docker engine reports about it.

An exit code alone cannot tell an out-of-memory kill, a stop at the time limit and an
engine restart apart: all three are 137 (or 143 for a trainer that handles SIGTERM).
``State.OOMKilled`` tells the first. For the last, the engine's start time is read from its
default ``bridge`` network: the engine deletes that network and creates it anew every time
it starts without live-restored containers, which is exactly when a restart has killed
them. A unit that started before the engine did was running when the engine went away.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import docker
import requests
from docker.errors import DockerException, NotFound
from docker.models.containers import Container

from runtimes.base import RuntimeUnavailableError, UnitExit
from runtimes.docker_errors import is_timeout

FINISHED_STATES = ("exited", "dead")
_SIGKILLED = 137
_LATE_OOM_SECONDS = 2.0

_DOCKER_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")
_UNITS = (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10))


def parse_time(text: str | None) -> datetime | None:
    """A Docker timestamp (RFC 3339 with nanoseconds); None for Docker's zero time."""
    match = _DOCKER_TIME.match(text or "")
    if match is None or match.group(1).startswith("0001-"):
        return None
    seconds, fraction, zone = match.groups()
    micros = (fraction or "0")[:6].ljust(6, "0")
    parsed = datetime.fromisoformat(f"{seconds}.{micros}{'+00:00' if zone == 'Z' else zone}")
    return parsed.astimezone(UTC)


def memory_text(limit: int | None) -> str | None:
    """A memory limit in bytes as Docker's options write it (67108864 is ``64m``)."""
    if not limit or limit <= 0:
        return None
    for unit, size in _UNITS:
        if limit % size == 0:
            return f"{limit // size}{unit}"
    return f"{limit}b"


def engine_started_at(client: docker.DockerClient) -> datetime | None:
    """When the engine last started (see the module's docstring); None if it cannot say.

    An engine without a default bridge (``--bridge=none``) or that is not Docker's own
    cannot say.
    """
    try:
        network: dict[str, Any] = client.api.inspect_network("bridge")
    except NotFound:
        return None
    return parse_time(network.get("Created"))


def unit_exit(attrs: dict[str, Any], engine_started: datetime | None) -> UnitExit:
    """How the container whose ``docker inspect`` is ``attrs`` ended.

    Killed by an engine restart: it failed (a trainer that exits 0 finished, whatever
    stopped it), not for lack of memory, and it had started before the engine it reports to.
    """
    state = attrs["State"]
    code = int(state["ExitCode"])
    oom_killed = bool(state.get("OOMKilled"))
    started = parse_time(state.get("StartedAt"))
    restarted = (
        code != 0
        and not oom_killed
        and engine_started is not None
        and started is not None
        and started < engine_started
    )
    return UnitExit(
        code=code,
        oom_killed=oom_killed,
        memory_limit=memory_text((attrs.get("HostConfig") or {}).get("Memory")),
        killed_by_engine_restart=restarted,
    )


def wait_for_exit(container: Container, timeout: float) -> int | None:
    """The container's exit code, waiting at most ``timeout`` seconds; None while it runs."""
    state = container.attrs["State"]
    if state["Status"] in FINISHED_STATES:
        return int(state["ExitCode"])
    if timeout <= 0:
        return None
    # "not-running" answers at once, with 0, for a container that was never started.
    condition: Literal["next-exit", "not-running"] = (
        "next-exit" if state["Status"] == "created" else "not-running"
    )
    try:
        result = container.wait(timeout=timeout, condition=condition)
    except NotFound:
        raise LookupError(container.name) from None
    except requests.RequestException as exc:
        if is_timeout(exc):
            return None
        raise
    return int(result["StatusCode"])


def read_exit(container: Container, new_client: Callable[[], docker.DockerClient]) -> UnitExit:
    """How an exited container ended; a failed exit is read again on a new connection.

    An engine shutting down closes its API before it stops its containers, so a container
    it stopped is seen to exit (on a connection opened earlier) while new connections are
    refused. The caller then gets the connection error and asks again once the engine is
    back, when its bridge network shows that it started after the container did.
    """
    state = container.attrs["State"]
    if state["Status"] not in FINISHED_STATES:
        raise LookupError(f"{container.name} has not exited")
    _await_late_oom_event(container)
    state = container.attrs["State"]
    if state["ExitCode"] == 0 or state.get("OOMKilled"):
        return unit_exit(container.attrs, None)
    try:
        client = new_client()
    except DockerException as exc:  # docker.from_env asks the engine for its API version
        raise RuntimeUnavailableError(f"the Docker engine cannot be asked: {exc}") from exc
    try:
        client.ping()
        attrs = client.api.inspect_container(container.attrs["Id"])
        return unit_exit(attrs, engine_started_at(client))
    except NotFound:
        raise LookupError(container.name) from None
    finally:
        client.close()


def _await_late_oom_event(container: Container) -> None:
    """Give the engine a moment to mark a SIGKILLed container with a memory limit OOMKilled.

    The kernel's OOM event and the exit reach the engine separately; under load the exit can
    come first, and OOMKilled is set a moment later.
    """
    deadline = time.monotonic() + _LATE_OOM_SECONDS
    while (
        container.attrs["State"]["ExitCode"] == _SIGKILLED
        and not container.attrs["State"].get("OOMKilled")
        and (container.attrs.get("HostConfig") or {}).get("Memory")
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
        container.reload()
