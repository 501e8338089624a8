"""What a failed call to the Docker engine means: a bad command, an engine away, or trouble.

The engine's error texts are all it says about a failed container start, so they are read
here, in one place, and tested against texts real engines wrote (tests/runtimes). With
Docker's init as PID 1 a command that cannot run fails after the start instead, which
``init_exec_failure`` reads.
"""

from __future__ import annotations

import os
import re

import requests
import urllib3.exceptions
from docker.errors import APIError
from docker.models.containers import Container

# runc failing to exec the container's process: the command (or the image's entrypoint) is
# missing, not executable or not a file. Older runc quote the cause with escaped quotes.
_BAD_EXEC = re.compile(
    r'exec: \\?"[^"\\]*\\?": (?:stat [^:]*: )?'
    r"(?:no such file or directory|executable file not found in \$PATH|permission denied"
    r"|is a directory|not a directory|exec format error)",
    re.IGNORECASE,
)


def is_bad_command(why: str) -> bool:
    """Whether a container start failed because its command can never be executed.

    Only then is the failure permanent. "OCI runtime create failed" alone says nothing of the
    kind: it also prefixes mounts that lost a race, cgroups under pressure and a runtime that
    died, which another try may well get past.
    """
    return _BAD_EXEC.search(why) is not None


def is_transport_error(exc: BaseException) -> bool:
    """Whether the engine could not be talked to at all (refused, reset, cut off mid-answer).

    An error the engine answered with (``APIError``, an HTTP error) is not one.
    """
    return isinstance(exc, requests.RequestException) and not isinstance(exc, requests.HTTPError)


def is_timeout(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.Timeout):
        return True
    # Over a unix socket a read timeout surfaces as a ConnectionError wrapping urllib3's.
    return isinstance(exc, requests.ConnectionError) and any(
        isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args
    )


def why(exc: Exception) -> str:
    """The engine's own explanation of an error, else the error's text."""
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
