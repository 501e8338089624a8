"""Which API the CLI talks to: ``--url``/``ORCHESTRATOR_URL``, else the stack's own ``.env``.

``make run`` and the API read ``API_HOST``, ``API_PORT`` and ``API_KEY`` from ``.env`` in the
directory they start in; run from the same directory, the CLI finds the API there without
flags. The CLI talks HTTP only, so it reads the file itself rather than the server's settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

DEFAULT_URL = "http://localhost:8000"
STACK_FILE = ".env"
# The server's defaults (core/settings.py) for what .env leaves out.
_STACK_HOST = "127.0.0.1"
_STACK_PORT = 8000
# Addresses a server listens on but a client cannot connect to: the API is on this machine.
_EVERY_INTERFACE = {"0.0.0.0", "::", "[::]"}


class StackFileError(ValueError):
    """The stack's ``.env`` names the API in a way no URL can be made of."""


@dataclass(frozen=True)
class Target:
    """Where the API is and how to authenticate."""

    url: str
    api_key: str | None


def resolve_target(url: str | None, api_key: str | None, directory: Path) -> Target:
    """The API to talk to: ``url`` if given, else the one ``directory/.env`` describes.

    ``API_KEY`` from ``.env`` is used only for the API that file describes: a key of this
    stack must not travel to a URL given on the command line or in ``ORCHESTRATOR_URL``.

    Raises:
        StackFileError: ``API_PORT`` in ``.env`` is not a port number.
    """
    if url:
        return Target(url, api_key or None)
    stack = _stack_settings(directory / STACK_FILE)
    host, port = stack.get("api_host"), stack.get("api_port")
    if host is None and port is None:
        return Target(DEFAULT_URL, api_key or stack.get("api_key"))
    return Target(_url(host or _STACK_HOST, _port(port)), api_key or stack.get("api_key"))


def _stack_settings(path: Path) -> dict[str, str]:
    """The file's non-empty values by lower-case name (the server ignores the names' case)."""
    if not path.is_file():
        return {}
    values = dotenv_values(path)
    return {
        name.lower(): value.strip() for name, value in values.items() if value and value.strip()
    }


def _port(value: str | None) -> int:
    if value is None:
        return _STACK_PORT
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise StackFileError(f"API_PORT in {STACK_FILE} is not a port number: {value!r}")
    return int(value)


def _url(host: str, port: int) -> str:
    if host in _EVERY_INTERFACE:
        host = _STACK_HOST
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    return f"http://{host}:{port}"
