"""API bodies of a job's runs and schedule controls: history, pause, trigger, backfill."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints, model_validator

from jobs.fields import OverlapPolicy
from jobs.schemas import CheckpointResponse, Delivery, FiringTime, Progress
from jobs.status import JobStatus


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
    trigger: str
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


class RunList(BaseModel):
    runs: list[RunResponse]
    total: int
    page: int
    page_size: int


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
    missed_catchup_window: int
    running_runs: list[str]
    events: list[ScheduleEventResponse]


class NoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Annotated[str, StringConstraints(max_length=1000)] | None = None


class TriggerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow_overlap: bool = False


class BackfillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime
    end: AwareDatetime
    overlap_policy: OverlapPolicy = "buffer_all"
    dry_run: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> BackfillRequest:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class BackfillResponse(BaseModel):
    job_id: str
    dry_run: bool
    count: int
    times: list[FiringTime]
