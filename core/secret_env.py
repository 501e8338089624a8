"""Which of the worker's environment variables a job may receive through ``secret_env``.

The worker hands a job the value of each variable the job names. Without a limit, a job could
name ``DATABASE_URL`` or ``SLACK_BOT_TOKEN`` and print them. SECRET_ENV_ALLOW lists the names
(or ``PREFIX_*`` patterns) an operator meant for trainers; empty allows none, and the
orchestrator's own settings are refused whatever the list says. The API checks it when a job
is written (400), and the worker again when it resolves the values (the list may have shrunk).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from core.errors import InvalidInput
from core.settings import Settings

# Read by the docker SDK and the Temporal client rather than by Settings.
_OTHER_OWN_NAMES = frozenset({"DOCKER_HOST", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"})


@cache
def own_setting_names() -> frozenset[str]:
    return frozenset(name.upper() for name in Settings.model_fields) | _OTHER_OWN_NAMES


def secret_env_problem(settings: Settings, name: str) -> str | None:
    """Why ``name`` may not be handed to a job, or None if it may."""
    if name.upper() in own_setting_names():
        return f"secret_env: {name} is one of the orchestrator's own settings"
    for allowed in settings.secret_env_allow:
        prefix = allowed.removesuffix("*")
        if name == allowed or (allowed.endswith("*") and name.startswith(prefix)):
            return None
    allowed_list = ", ".join(settings.secret_env_allow) or "empty"
    return f"secret_env: {name} is not in SECRET_ENV_ALLOW ({allowed_list})"


def check_secret_env(settings: Settings, names: Iterable[str] | None) -> None:
    """Raises InvalidInput naming the first variable a job may not receive."""
    for name in names or ():
        if problem := secret_env_problem(settings, name):
            raise InvalidInput(problem)
