"""Reading the docker SDK's errors: timeouts, the engine's explanation, an unreachable engine."""

from __future__ import annotations

import os

import requests
import urllib3.exceptions
from docker.errors import APIError
from docker.models.containers import Container


def is_timeout(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.Timeout):
        return True
    # Over a unix socket a read timeout surfaces as a ConnectionError wrapping urllib3's.
    return isinstance(exc, requests.ConnectionError) and any(
        isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args
    )


def why(exc: Exception) -> str:
    if isinstance(exc, APIError) and exc.explanation:
        return str(exc.explanation)
    return str(exc)


def unreachable_message(exc: Exception, url: str | None) -> str:
    where = url or os.environ.get("DOCKER_HOST")
    where = where or "unix:///var/run/docker.sock (the default; DOCKER_HOST is unset)"
    return (
        f"the Docker engine at {where} could not be reached ({exc}). Start one "
        "(`sudo dockerd` or `sudo systemctl start docker`; install it with "
        "`sudo apt-get install docker.io`), point DOCKER_HOST at a running engine, "
        "or set RUNTIME=process to run training commands directly on the worker host."
    )


# With Docker's init (tini) as PID 1 a command that cannot be executed no longer fails the
# start: tini reports it and exits 126/127 at once.
_INIT_EXEC_FAILED = b"[FATAL tini"
_INIT_EXEC_WAIT_SECONDS = 0.2


def init_exec_failure(container: Container) -> str | None:
    """Why init could not execute the command, if it failed so at once."""
    try:
        result = container.wait(timeout=_INIT_EXEC_WAIT_SECONDS)
    except requests.RequestException as exc:
        if is_timeout(exc):
            return None  # still running: the command did start
        raise
    if result.get("StatusCode") not in (126, 127):
        return None
    output: bytes = container.logs(stdout=True, stderr=True, tail=20)
    for line in output.splitlines():
        if line.startswith(_INIT_EXEC_FAILED):
            return line.decode("utf-8", errors="replace")
    return None
