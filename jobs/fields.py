"""Field types of a job, with the validation that turns bad input into a 400 naming the field."""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StringConstraints,
)

from jobs import schema_patterns as patterns
from jobs.cron import validate_cron
from jobs.strict import JSON_INT
from notifications.registry import ChannelJobOptions
from workflows.models import NotifyEvent

# Characters that rewrite a terminal or hide or reorder what a reader sees (NUL, ESC, CR, LF,
# U+202E, zero-width ones, ...); a multi-line text (a note) keeps newline and tab.
UNSAFE_CHARS = re.compile(f"[{patterns.UNSAFE_CLASS}]")
UNSAFE_IN_TEXT = re.compile(f"[{patterns.UNSAFE_IN_TEXT_CLASS}]")


def refuse_unsafe_chars(text: str) -> str:
    if found := UNSAFE_CHARS.search(text):
        raise ValueError(f"must not contain control or bidi characters (found {found[0]!r})")
    return text


def refuse_unsafe_in_text(text: str) -> str:
    if found := UNSAFE_IN_TEXT.search(text):
        raise ValueError(f"must not contain control or bidi characters (found {found[0]!r})")
    return text


def _refuse_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain NUL bytes")
    return text


def _schema(**extra: Any) -> Any:
    """What the OpenAPI schema says beyond what pydantic derives (see jobs.schema_patterns)."""
    return Field(json_schema_extra=extra)


JobName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
    AfterValidator(refuse_unsafe_chars),
    _schema(pattern=patterns.SAFE_NAME),
]
ImageRef = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=512, pattern=r"^\S+$"),
    AfterValidator(refuse_unsafe_chars),
    _schema(pattern=patterns.SAFE_TOKEN),
]
Note = Annotated[
    str,
    StringConstraints(max_length=1000),
    AfterValidator(refuse_unsafe_in_text),
    _schema(pattern=patterns.SAFE_TEXT),
]


MaxRetries = Annotated[int, Field(ge=0, le=100), JSON_INT]


def _check_command(command: list[str]) -> list[str]:
    if not command[0].strip():
        raise ValueError("the first element (the program to run) must not be empty")
    return command


_ARGUMENT = {"type": "string", "maxLength": 65_536, "pattern": patterns.NO_NUL}
Command = Annotated[
    list[
        Annotated[
            str,
            StringConstraints(max_length=65_536),
            AfterValidator(_refuse_nul),
            _schema(pattern=patterns.NO_NUL),
        ]
    ],
    Field(min_length=1, max_length=4096),
    AfterValidator(_check_command),
    # The program (the first element) must not be blank.
    _schema(prefixItems=[{**_ARGUMENT, "pattern": "^[^\\x00]*[^\\s\\x00][^\\x00]*$"}]),
]


def _check_cron(expr: str) -> str:
    return validate_cron(expr)


CronSchedule = Annotated[
    str,
    StringConstraints(max_length=255),
    AfterValidator(_check_cron),
    _schema(
        pattern=patterns.CRON,
        description="Five-field cron (minute hour day-of-month month day-of-week) or @daily "
        "and friends; the API also takes ranges and names. See docs/scheduling.md.",
    ),
]


# Directories of the image a mount must never hide: its programs, libraries and the kernel's
# views (/lib* covers lib32, lib64, libx32 too).
SYSTEM_DIRS = frozenset({"bin", "boot", "dev", "etc", "proc", "run", "sbin", "sys", "usr"})
# Every job without a checkpoint_path gets /checkpoints/<job_id>: this one contains them all.
DEFAULT_CHECKPOINT_PARENT = "/checkpoints"


def normalize_checkpoint_path(path: str) -> str:
    """Validate a checkpoint path as the trainer sees it; it lives under the checkpoint root.

    ``/checkpoints/resnet50`` is mounted from ``<root>/checkpoints/resnet50``; anything that
    could reach outside the root (``..``), hide the image's own system directories (``/bin``,
    ``/etc``, ``/usr``, ``/lib*``...) or be read two ways (``//``, ``:``, control characters)
    is rejected rather than cleaned up, so the user sees exactly what will be used. Only a
    trailing ``/`` is dropped.
    """
    refuse_unsafe_chars(path)
    if not path.startswith("/"):
        raise ValueError("must be an absolute path such as /checkpoints/my-job")
    if "//" in path:
        raise ValueError("must not contain '//'")
    if ":" in path or "\\" in path:
        raise ValueError("must not contain ':' or '\\'")
    if {".", ".."} & set(path.split("/")):
        raise ValueError("must not contain '.' or '..' parts")
    normalized = posixpath.normpath(path)
    if normalized == "/":
        raise ValueError("must name a directory below /, not / itself")
    top = normalized.split("/")[1]
    if top in SYSTEM_DIRS or top.startswith("lib"):
        raise ValueError(f"must not be in the image's system directory /{top}")
    if normalized == DEFAULT_CHECKPOINT_PARENT:
        raise ValueError(
            f"must not be {DEFAULT_CHECKPOINT_PARENT}: it holds other jobs' directories"
        )
    return normalized


CheckpointPath = Annotated[
    str,
    StringConstraints(min_length=2, max_length=1024),
    AfterValidator(normalize_checkpoint_path),
    _schema(pattern=patterns.CHECKPOINT_PATH),
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


EnvName = Annotated[
    str,
    StringConstraints(max_length=255),
    AfterValidator(_check_env_name),
    _schema(pattern=_ENV_NAME.pattern, **{"not": {"enum": sorted(RESERVED_ENV)}}),
]
EnvValue = Annotated[
    str,
    StringConstraints(max_length=65_536),
    AfterValidator(_refuse_nul),
    _schema(pattern=patterns.NO_NUL),
]
Env = Annotated[dict[EnvName, EnvValue], Field(max_length=500)]
SecretEnv = Annotated[list[EnvName], Field(max_length=100)]
TimeoutSeconds = Annotated[int, Field(ge=1, le=30 * 24 * 3600), JSON_INT]


# Docker refuses less than 6 MiB; more than 4 TiB is a typo on any machine of today.
MIN_MEMORY_BYTES = 6 * 1024**2
MAX_MEMORY_BYTES = 4 * 1024**4
_MEMORY_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def memory_bytes(text: str) -> int:
    """``"16g"`` -> 17179869184: Docker's meaning of a memory limit (binary units)."""
    digits = text.lower().rstrip("b") if len(text) > 1 else text
    unit = digits[-1] if digits[-1] in "kmg" else ""
    return int(digits.removesuffix(unit)) * _MEMORY_UNITS[unit]


def _check_memory(text: str) -> str:
    size = memory_bytes(text)
    if not MIN_MEMORY_BYTES <= size <= MAX_MEMORY_BYTES:
        raise ValueError(f"{text} is {size} bytes; allowed from 6m to 4096g")
    return text


MemoryLimit = Annotated[
    str,
    StringConstraints(max_length=20, pattern=r"^[1-9][0-9]{0,15}[kmgKMG]?[bB]?$"),
    AfterValidator(_check_memory),
    _schema(pattern=patterns.memory_pattern(MIN_MEMORY_BYTES, MAX_MEMORY_BYTES)),
]


class Resources(BaseModel):
    """Compute a run may use: Docker device requests and limits."""

    model_config = ConfigDict(extra="forbid")

    gpus: Literal["all"] | Annotated[int, Field(ge=0, le=64), JSON_INT] | None = None
    cpus: Annotated[StrictFloat, Field(gt=0, le=1024)] | None = None
    memory: MemoryLimit | None = None


class NotificationSettings(ChannelJobOptions):
    """Per-job routing of notifications; secrets never go here (they are worker settings).

    Besides ``events``, its fields are the channels' own options (``notifications/``); any
    other field is refused, so a job cannot name where the worker sends (no webhook URL).
    """

    model_config = ConfigDict(extra="forbid")

    events: list[NotifyEvent] | None = None


TIMEZONES = sorted(available_timezones())


def _check_timezone(name: str) -> str:
    if name not in TIMEZONES:
        raise ValueError(f"{name!r} is not a known IANA time zone (e.g. Europe/Berlin)")
    return name


Timezone = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    AfterValidator(_check_timezone),
    _schema(enum=TIMEZONES),
]
OverlapPolicy = Literal[
    "skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all"
]
# Temporal refuses catch-up windows under ten seconds.
CatchupWindowSeconds = Annotated[int, Field(ge=10, le=366 * 24 * 3600), JSON_INT]
