"""The REST API's request and response bodies (the contract of the API usage guide)."""

from __future__ import annotations

import posixpath
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    model_validator,
)

from jobs.cron import validate_cron
from jobs.status import JobStatus

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


class JobCreate(BaseModel):
    """Body of ``POST /jobs``."""

    model_config = ConfigDict(extra="forbid")

    name: JobName
    image: ImageRef
    command: Command
    schedule: CronSchedule | None = None
    max_retries: MaxRetries = 3
    checkpoint_path: CheckpointPath | None = None


class JobUpdate(BaseModel):
    """Body of ``PUT /jobs/{job_id}``: fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: JobName | None = None
    image: ImageRef | None = None
    command: Command | None = None
    schedule: CronSchedule | None = None
    max_retries: MaxRetries | None = None
    checkpoint_path: CheckpointPath | None = None

    @model_validator(mode="after")
    def _only_schedule_may_be_null(self) -> JobUpdate:
        for key in self.model_fields_set - {"schedule"}:
            if getattr(self, key) is None:
                raise ValueError(f"{key} must not be null (leave it out to keep it unchanged)")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields the client sent; ``schedule: null`` is a change, other nulls are not."""
        return self.model_dump(include=self.model_fields_set)


class JobResponse(BaseModel):
    """A job as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    job_id: str
    name: str
    image: str
    command: list[str]
    schedule: str | None
    max_retries: int
    retry_count: int
    checkpoint_path: str
    status: JobStatus
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    latest_run_id: str | None
    created_at: datetime
    updated_at: datetime


class JobList(BaseModel):
    jobs: list[JobResponse]
    total: int
    page: int
    page_size: int


class Stats(BaseModel):
    total_jobs: int
    pending: int
    running: int
    completed: int
    failed: int
    retrying: int
    cancelled: int


class Health(BaseModel):
    status: Literal["healthy", "unhealthy"]
    timestamp: datetime
    service: str
    database_connected: bool
    temporal_connected: bool


class ErrorBody(BaseModel):
    detail: str
    error_type: str
