"""Contract types of TrainingJobWorkflow and its activities (one input model per call).

Kept free of I/O libraries so the workflow sandbox and SDK clients can import it cheaply.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

WORKFLOW_NAME = "TrainingJobWorkflow"
START_RUN = "start_run"
RECORD_RUN_STATUS = "record_run_status"
RUN_TRAINING_CONTAINER = "run_training_container"
NOTIFY_RUN_STATUS = "notify_run_status"

# ApplicationError types: what failed and whether Temporal may retry it.
JOB_NOT_FOUND = "JobNotFound"
INVALID_JOB_SPEC = "InvalidJobSpec"
TRAINING_FAILED = "TrainingFailed"
RUNTIME_UNAVAILABLE = "RuntimeUnavailable"
INVALID_SPEC = "InvalidSpec"
IMAGE_UNAVAILABLE = "ImageUnavailable"


class TrainingRunInput(BaseModel):
    """What a schedule (or an SDK client) passes to start one run of a job.

    ``job`` is for SDK clients starting a run of a job the orchestrator does not know yet:
    the body of ``POST /jobs`` (name, image, command, ...). The job is then registered as a
    one-off job. Schedules never set it: their runs read the job's current spec from SQL.
    """

    job_id: str
    job: dict[str, Any] | None = None


class StartRunInput(BaseModel):
    job_id: str
    run_id: str
    execution_id: str
    started_at: datetime
    started_by_schedule: bool
    # The firing a schedule started this run for (TemporalScheduledStartTime).
    scheduled_at: datetime | None = None
    job: dict[str, Any] | None = None


class RunPlan(BaseModel):
    """The job's spec as read at the start of the run, plus the worker's retry settings."""

    job_id: str
    run_id: str
    name: str
    image: str
    command: list[str]
    max_retries: int
    checkpoint_path: str
    env: dict[str, str] = {}
    secret_env: list[str] = []
    resources: dict[str, Any] | None = None
    timeout_seconds: int | None = None
    resume_policy: str = "retries"
    trigger: str
    retry_backoff_seconds: float
    retry_backoff_max_seconds: float
    heartbeat_timeout_seconds: float
    infra_max_attempts: int
    notify_timeout_seconds: float = 30.0


class RunAttemptInput(BaseModel):
    job_id: str
    run_id: str
    attempt: int
    image: str
    command: list[str]
    checkpoint_path: str
    env: dict[str, str] = {}
    # Names only; values are read from the worker's environment and never enter history.
    secret_env: list[str] = []
    resources: dict[str, Any] | None = None
    timeout_seconds: int | None = None
    resume_policy: str = "retries"


class AttemptOutcome(BaseModel):
    exit_code: int
    log_tail: str
    reattached: bool
    timed_out: bool = False


class RunStatusUpdate(BaseModel):
    """One status transition of a run; applying it twice has the effect of applying it once."""

    job_id: str
    run_id: str
    status: str
    attempt: int
    retry_count: int
    at: datetime
    error_message: str | None = None
    exit_code: int | None = None


class TrainingRunResult(BaseModel):
    job_id: str
    run_id: str
    status: str
    attempts: int
    exit_code: int | None
