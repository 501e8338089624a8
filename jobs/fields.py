"""Field types of a job, with the validation that turns bad input into a 400 naming the field."""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
)

from jobs.cron import validate_cron
from notifications.registry import ChannelJobOptions
from workflows.models import NotifyEvent

JobName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
ImageRef = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=512, pattern=r"^\S+$"),
]
MaxRetries = Annotated[StrictInt, Field(ge=0, le=100)]


def _check_command(command: list[str]) -> list[str]:
    if not command[0].strip():
        raise ValueError("the first element (the program to run) must not be empty")
    return command


Command = Annotated[
    list[Annotated[str, StringConstraints(max_length=65_536)]],
    Field(min_length=1, max_length=4096),
    AfterValidator(_check_command),
]


def _check_cron(expr: str) -> str:
    return validate_cron(expr)


CronSchedule = Annotated[str, AfterValidator(_check_cron)]


def normalize_checkpoint_path(path: str) -> str:
    """Validate a checkpoint path as the trainer sees it; it lives under the checkpoint root.

    ``/checkpoints/resnet50`` is mounted from ``<root>/checkpoints/resnet50``; anything that
    could reach outside the root (``..``, a NUL byte) or would shadow the container's own root
    is rejected rather than cleaned up, so the user sees exactly what will be used.
    """
    if "\x00" in path:
        raise ValueError("must not contain NUL bytes")
    if not path.startswith("/"):
        raise ValueError("must be an absolute path such as /checkpoints/my-job")
    if ".." in path.split("/"):
        raise ValueError("must not contain '..'")
    normalized = posixpath.normpath(path)
    if normalized == "/":
        raise ValueError("must name a directory below /, not / itself")
    return normalized


CheckpointPath = Annotated[
    str, StringConstraints(max_length=1024), AfterValidator(normalize_checkpoint_path)
]


# Names every run's environment already carries; a job cannot override them.
RESERVED_ENV = frozenset({"JOB_ID", "RUN_ID", "ATTEMPT", "CHECKPOINT_DIR", "RESUME_FROM"})
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid environment variable name")
    if name in RESERVED_ENV:
        raise ValueError(
            f"{name} is reserved: every run sets it (reserved: {sorted(RESERVED_ENV)})"
        )
    return name


EnvName = Annotated[str, StringConstraints(max_length=255), AfterValidator(_check_env_name)]
Env = Annotated[
    dict[EnvName, Annotated[str, StringConstraints(max_length=65_536)]], Field(max_length=500)
]
SecretEnv = Annotated[list[EnvName], Field(max_length=100)]
TimeoutSeconds = Annotated[StrictInt, Field(ge=1, le=30 * 24 * 3600)]


class Resources(BaseModel):
    """Compute a run may use: Docker device requests and limits."""

    model_config = ConfigDict(extra="forbid")

    gpus: Literal["all"] | Annotated[StrictInt, Field(ge=0, le=64)] | None = None
    cpus: Annotated[float, Field(gt=0, le=1024)] | None = None
    memory: (
        Annotated[
            str, StringConstraints(strip_whitespace=True, pattern=r"(?i)^[1-9][0-9]*[kmg]?b?$")
        ]
        | None
    ) = None


class NotificationSettings(ChannelJobOptions):
    """Per-job routing of notifications; secrets never go here (they are worker settings).

    Besides ``events``, its fields are the channels' own options (``notifications/``); any
    other field is refused, so a job cannot name where the worker sends (no webhook URL).
    """

    model_config = ConfigDict(extra="forbid")

    events: list[NotifyEvent] | None = None


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a known IANA time zone (e.g. Europe/Berlin)") from None
    return name


Timezone = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_check_timezone)
]
OverlapPolicy = Literal[
    "skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all"
]
# Temporal refuses catch-up windows under ten seconds.
CatchupWindowSeconds = Annotated[StrictInt, Field(ge=10, le=366 * 24 * 3600)]
