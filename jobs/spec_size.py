"""The bound on a job's spec size, so that every run's payloads fit in Temporal's limits."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from core.errors import InvalidInput
from core.settings import Settings


def spec_bytes(command: Sequence[str], env: Mapping[str, str], secret_env: Sequence[str]) -> int:
    """What ``command``, ``env`` and ``secret_env`` take as JSON (UTF-8), as runs carry them."""
    return sum(
        len(json.dumps(part, ensure_ascii=False, separators=(",", ":")).encode())
        for part in (list(command), dict(env), list(secret_env))
    )


def check_spec_size(
    settings: Settings,
    command: Sequence[str],
    env: Mapping[str, str] | None,
    secret_env: Sequence[str] | None,
) -> None:
    """Refuse a spec over ``MAX_SPEC_BYTES``: its runs could not be started.

    Raises:
        InvalidInput: The spec is too big; the message names the setting and both sizes.
    """
    size = spec_bytes(command, env or {}, secret_env or [])
    if size > settings.max_spec_bytes:
        raise InvalidInput(
            f"the job spec is too big: command, env and secret_env take {size} bytes as JSON, "
            f"MAX_SPEC_BYTES allows {settings.max_spec_bytes}"
        )
