"""The REST API's response bodies (the contract of the API usage guide)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from jobs.fields import NotificationSettings, OverlapPolicy, Resources
from workflows.models import JobStatus, ResumePolicy, Trigger


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
    # API key names; None for jobs written before they were recorded.
    created_by: str | None = None
    updated_by: str | None = None
    priority: int = 0
    # While the latest run is queued: why, and its place in its line (1 = next).
    queue_reason: str | None = None
    queue_position: int | None = None
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
    # Pass as ``cursor`` for the page after this one (None when this page is not full).
    next_cursor: str | None = None


class Stats(BaseModel):
    total_jobs: int
    pending: int
    running: int
    completed: int
    failed: int
    retrying: int
    cancelled: int
    queued: int = 0
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


class Attempt(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    exit_code: int | None
    started_at: datetime
    ended_at: datetime | None


class RunResponse(BaseModel):
    """One run of a job: a scheduled firing, a manual trigger, a retry, a backfill, an SDK start."""

    run_id: str
    job_id: str
    trigger: Trigger
    scheduled_at: datetime | None
    started_at: datetime
    completed_at: datetime | None
    status: JobStatus
    retry_count: int
    attempts: list[Attempt]
    error_message: str | None
    progress: Progress | None
    latest_checkpoint: CheckpointResponse | None
    notifications: list[Delivery]
    temporal_ui_url: str
    # The API key name that started the run (None: the schedule or an SDK start)...
    triggered_by: str | None = None
    # ...and the one that cancelled it.
    cancelled_by: str | None = None
    # The worker the run was placed on and the GPU ids it leased there.
    host: str | None = None
    gpus: list[str] | None = None
    queue_reason: str | None = None
    queue_position: int | None = None


class RunList(BaseModel):
    runs: list[RunResponse]
    total: int
    page: int
    page_size: int
    # Pass as ``cursor`` for the page after this one (None when this page is not full).
    next_cursor: str | None = None


class ScheduleEventResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event: str
    note: str | None
    actor: str
    at: datetime


class ScheduleView(BaseModel):
    """What Temporal knows of a job's schedule, and its pause/resume history."""

    job_id: str
    schedule: str | None
    timezone: str
    paused: bool
    note: str | None
    next_run_times: list[FiringTime]
    skipped_overlap: int
    # Firings skipped because a run the schedule did not start (a manual run, a retry) was
    # active; each is also in ``events`` as ``skipped``, with its reason.
    skipped_active_run: int = 0
    missed_catchup_window: int
    running_runs: list[str]
    events: list[ScheduleEventResponse]


class BackfillResponse(BaseModel):
    job_id: str
    dry_run: bool
    count: int
    times: list[FiringTime]


class MetricSeries(BaseModel):
    """One metric of a run, ordered by step: ``steps[i]``, ``values[i]`` and ``times[i]``
    belong together."""

    name: str
    steps: list[int]
    values: list[float]
    times: list[datetime]


class RunMetrics(BaseModel):
    """A run's metric history, from the trainer's PROGRESS reports, within its bounds."""

    job_id: str
    run_id: str
    series: list[MetricSeries]
    # Values of metric names past the run's cap, counted rather than kept.
    ignored_values: int
    max_points_per_metric: int
    max_metrics: int
