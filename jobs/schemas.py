"""The REST API's request and response bodies (the contract of the API usage guide)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from jobs.fields import (
    CatchupWindowSeconds,
    CheckpointPath,
    Command,
    CronSchedule,
    Env,
    ImageRef,
    JobName,
    MaxRetries,
    NotificationSettings,
    OverlapPolicy,
    Resources,
    ResumePolicy,
    SecretEnv,
    TimeoutSeconds,
    Timezone,
)
from jobs.status import JobStatus


class JobCreate(BaseModel):
    """Body of ``POST /jobs``."""

    model_config = ConfigDict(extra="forbid")

    name: JobName
    image: ImageRef
    command: Command
    schedule: CronSchedule | None = None
    timezone: Timezone = "UTC"
    overlap_policy: OverlapPolicy = "skip"
    catchup_window_seconds: CatchupWindowSeconds | None = None
    paused: bool = False
    max_retries: MaxRetries = 3
    checkpoint_path: CheckpointPath | None = None
    env: Env = Field(default_factory=dict)
    secret_env: SecretEnv = Field(default_factory=list)
    resources: Resources | None = None
    timeout_seconds: TimeoutSeconds | None = None
    resume_policy: ResumePolicy = "retries"
    notifications: NotificationSettings | None = None

    @model_validator(mode="after")
    def _secret_names_are_not_env(self) -> JobCreate:
        _check_env_overlap(self.env, self.secret_env)
        return self


def _check_env_overlap(env: dict[str, str] | None, secret_env: list[str] | None) -> None:
    both = set(env or {}) & set(secret_env or [])
    if both:
        raise ValueError(f"secret_env names {sorted(both)} are also set in env")


# Sending null for these clears them; for the other fields null is refused.
NULLABLE_ON_UPDATE = frozenset(
    {"schedule", "resources", "timeout_seconds", "notifications", "catchup_window_seconds"}
)


class JobUpdate(BaseModel):
    """Body of ``PUT /jobs/{job_id}``: fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: JobName | None = None
    image: ImageRef | None = None
    command: Command | None = None
    schedule: CronSchedule | None = None
    timezone: Timezone | None = None
    overlap_policy: OverlapPolicy | None = None
    catchup_window_seconds: CatchupWindowSeconds | None = None
    paused: bool | None = None
    max_retries: MaxRetries | None = None
    checkpoint_path: CheckpointPath | None = None
    env: Env | None = None
    secret_env: SecretEnv | None = None
    resources: Resources | None = None
    timeout_seconds: TimeoutSeconds | None = None
    resume_policy: ResumePolicy | None = None
    notifications: NotificationSettings | None = None

    @model_validator(mode="after")
    def _only_schedule_may_be_null(self) -> JobUpdate:
        _check_env_overlap(self.env, self.secret_env)
        for key in self.model_fields_set - NULLABLE_ON_UPDATE:
            if getattr(self, key) is None:
                raise ValueError(f"{key} must not be null (leave it out to keep it unchanged)")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, as plain values for the job row."""
        return self.model_dump(include=self.model_fields_set, exclude_none=False)


class FiringTime(BaseModel):
    local: datetime
    utc: datetime


class Progress(BaseModel):
    """The trainer's latest PROGRESS report for the job's latest run."""

    step: int | None = None
    total: int | None = None
    percent: float | None = None
    epoch: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    updated_at: datetime | None = None


class Delivery(BaseModel):
    """One notification about a run, on one channel."""

    model_config = ConfigDict(from_attributes=True)

    channel: str
    event: str
    status: str
    detail: str | None
    updated_at: datetime


class JobResponse(BaseModel):
    """A job as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    job_id: str
    name: str
    image: str
    command: list[str]
    schedule: str | None
    timezone: str
    overlap_policy: OverlapPolicy
    catchup_window_seconds: int | None
    paused: bool
    next_run_at: datetime | None
    # Single-job responses only: the next five firings, as Temporal computes them.
    next_run_times: list[FiringTime] | None = None
    max_retries: int
    retry_count: int
    checkpoint_path: str
    env: dict[str, str]
    secret_env: list[str]
    resources: Resources | None
    timeout_seconds: int | None
    resume_policy: ResumePolicy
    notifications: NotificationSettings | None
    status: JobStatus
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    latest_run_id: str | None
    progress: Progress | None = None
    # Single-job responses only: what was sent about the latest run, per channel.
    latest_run_notifications: list[Delivery] | None = None
    created_at: datetime
    updated_at: datetime


class CheckpointResponse(BaseModel):
    """A recorded checkpoint; ``path`` is relative to the job's checkpoint directory."""

    model_config = ConfigDict(from_attributes=True)

    path: str
    step: int | None
    size_bytes: int
    sha256: str
    run_id: str
    attempt: int
    created_at: datetime


class CheckpointList(BaseModel):
    job_id: str
    checkpoint_path: str
    latest: CheckpointResponse | None
    checkpoints: list[CheckpointResponse]


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
    paused: int
    scheduled: int


class Health(BaseModel):
    status: Literal["healthy", "unhealthy"]
    timestamp: datetime
    service: str
    database_connected: bool
    temporal_connected: bool


class ErrorBody(BaseModel):
    detail: str
    error_type: str
