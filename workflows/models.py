"""The contract of TrainingJobWorkflow and its activities, defined once.

Names (workflow, activities, error types, search attributes), the vocabulary (statuses,
triggers, resume policies) and one input model per call. Kept free of I/O libraries so the
workflow sandbox, the store and SDK clients can import it cheaply.

Payloads of runs already in flight must keep decoding: a model that changes shape accepts
its old form too (see ``_nest_spec``), and ``tests/replay`` holds recorded histories.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

WORKFLOW_NAME = "TrainingJobWorkflow"
START_RUN = "start_run"
RECORD_RUN_STATUS = "record_run_status"
RUN_TRAINING_CONTAINER = "run_training_container"
PULL_IMAGE = "pull_image"
NOTIFY_RUN_STATUS = "notify_run_status"
ACQUIRE_CAPACITY = "acquire_capacity"
RELEASE_CAPACITY = "release_capacity"
# Sent to a queued run's workflow when capacity may have freed (a release, a new worker).
CAPACITY_FREED_SIGNAL = "capacity_freed"
# Sent (with the placement epoch) to a run whose placed host's worker has not renewed its
# registration for HOST_LOST_SECONDS: the run is placed again (supervision/host_loss.py).
HOST_LOST_SIGNAL = "host_lost"

# ApplicationError types: what failed and whether Temporal may retry it.
JOB_NOT_FOUND = "JobNotFound"
INVALID_JOB_SPEC = "InvalidJobSpec"
TRAINING_FAILED = "TrainingFailed"
# Another run holds the job's claim (its one active run): an SDK start that lost it.
JOB_RUNNING = "JobRunning"
# A schedule firing waiting for the job's claim (buffer policies, backfills): retried.
CLAIM_HELD = "ClaimHeld"
RUNTIME_UNAVAILABLE = "RuntimeUnavailable"
INVALID_SPEC = "InvalidSpec"
# A copy of a run whose placement epoch is no longer the run's (it was placed again).
FENCED = "Fenced"
# A try whose unit its own worker stopped, cut off from Temporal or the database too long
# (activities/self_fence.py): retried without limit, never counted.
SELF_FENCED = "SelfFenced"
IMAGE_UNAVAILABLE = "ImageUnavailable"
# Retried, and counted by the attempt activity (INFRA_MAX_ATTEMPTS in a row).
ENGINE_UNREACHABLE = "EngineUnreachable"
INFRASTRUCTURE_FAILURE = "InfrastructureFailure"

# Custom search attributes (all Keyword), registered on the namespace by the dev stack, the
# API and the compose admin tools; the Temporal key objects are built in jobs.temporal and
# workflows.training from these names.
JOB_ID_ATTRIBUTE = "JobId"
JOB_NAME_ATTRIBUTE = "JobName"
TRIGGER_ATTRIBUTE = "Trigger"
SEARCH_ATTRIBUTE_NAMES = (JOB_ID_ATTRIBUTE, JOB_NAME_ATTRIBUTE, TRIGGER_ATTRIBUTE)


class JobStatus(StrEnum):
    """Status of a run; a job's status is that of its latest run (``pending`` before any)."""

    PENDING = "pending"
    # Waiting for capacity (GPUs, CPUs, memory) on some worker; owns the job like a run.
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_active(self) -> bool:
        """A run in this status owns the job: PUT, DELETE, retry and trigger must wait.

        A job is also active while a ``pending`` run holds its claim; the one test of both is
        ``store.claims.has_active_run``.
        """
        return self in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING)

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


# The statuses people can be told about (every status a run reaches after its start).
NotifyEvent = Literal["running", "retrying", "completed", "failed", "cancelled"]


class Trigger(StrEnum):
    """Why a run started."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"
    BACKFILL = "backfill"
    SDK = "sdk"


class ResumePolicy(StrEnum):
    """Which checkpoint an attempt resumes from: its run's (retries), the job's, or none."""

    RETRIES = "retries"
    ALWAYS = "always"
    NEVER = "never"


class TrainingSpec(BaseModel):
    """What to train: the job's spec as read at the start of a run."""

    image: str
    command: list[str]
    checkpoint_path: str
    env: dict[str, str] = Field(default_factory=dict)
    # Names only; values are read from the worker's environment and never enter history.
    secret_env: list[str] = Field(default_factory=list)
    # ``gpus`` (count or "all"), ``cpus`` (float), ``memory`` ("8g"); see jobs.fields.
    resources: dict[str, Any] | None = None
    timeout_seconds: int | None = None
    resume_policy: ResumePolicy = ResumePolicy.RETRIES

    def needs_capacity(self) -> bool:
        """Whether it asks for anything a worker must set aside (GPUs, CPUs, memory)."""
        resources = self.resources or {}
        gpus = resources.get("gpus")
        return gpus == "all" or bool(gpus) or bool(resources.get("cpus") or resources.get("memory"))


def _nest_spec(data: Any) -> Any:
    """Accept the flat form of releases before TrainingSpec (runs in flight carry it)."""
    if not isinstance(data, dict) or "spec" in data:
        return data
    names = TrainingSpec.model_fields.keys()
    spec = {key: data[key] for key in names if key in data}
    rest = {key: value for key, value in data.items() if key not in names}
    return {**rest, "spec": spec}


class TrainingRunInput(BaseModel):
    """What a schedule (or an SDK client) passes to start one run of a job.

    ``job`` is for SDK clients starting a run of a job the orchestrator does not know yet:
    the body of ``POST /jobs`` (name, image, command, ...). The job is then registered as a
    one-off job. Schedules never set it: their runs read the job's current spec from SQL.

    ``trigger`` is set by the API on the runs it starts itself (manual, retry); schedules and
    SDK clients leave it out and the run finds its trigger (schedule, backfill, sdk).
    ``allow_overlap`` runs it without the job's claim (``POST .../trigger`` with
    ``allow_overlap``); otherwise the run holds the claim, or fails (an SDK start) or is
    skipped (a schedule firing under ``skip``) when another run holds it.
    """

    job_id: str
    job: dict[str, Any] | None = None
    trigger: Trigger | None = None
    allow_overlap: bool = False
    # The API key name that asked for the run (manual, retry), recorded as its triggered_by.
    actor: str | None = None


class StartRunInput(BaseModel):
    job_id: str
    run_id: str
    execution_id: str
    started_at: datetime
    started_by_schedule: bool
    # The firing a schedule started this run for (TemporalScheduledStartTime).
    scheduled_at: datetime | None = None
    job: dict[str, Any] | None = None
    trigger: Trigger | None = None
    allow_overlap: bool = False
    # The API key name that asked for the run (manual, retry), recorded as its triggered_by.
    actor: str | None = None


class ImageReady(BaseModel):
    """Where the image is ready: the task queue only the worker that pulled it polls."""

    task_queue: str
    worker: str
    pulled: bool


class RunPlan(BaseModel):
    """One run: the job's spec as read at its start, plus the worker's retry settings."""

    job_id: str
    run_id: str
    name: str
    spec: TrainingSpec
    max_retries: int
    trigger: Trigger
    retry_backoff_seconds: float
    retry_backoff_max_seconds: float
    heartbeat_timeout_seconds: float
    infra_max_attempts: int
    notify_timeout_seconds: float = 30.0
    # How long an attempt waits on its worker's own task queue before it is placed again.
    host_loss_timeout_seconds: float = 600.0
    # A queued run is woken by a signal when capacity frees; this poll is the safety net.
    queue_poll_seconds: float = 30.0
    # Why this firing does not run (another run holds the job's claim); the run is over.
    skipped: str | None = None
    # A run that asks for no capacity, whose image the worker that started it already holds
    # (and may use without a pull): its first attempt goes to that worker's own queue at
    # once, without a pull_image round trip (patch ``image-ready-at-start``).
    image_ready: ImageReady | None = None
    # Whether the worker that started the run has any notification channel configured: a run
    # without one asks for no notify_run_status at all (patch ``notify-only-with-channels``).
    # True for runs from before the field (they always asked).
    notifies: bool = True

    _accept_flat = model_validator(mode="before")(_nest_spec)


class PullImageInput(BaseModel):
    """Make one attempt's image ready on some worker, which then runs the attempt."""

    job_id: str
    run_id: str
    attempt: int
    image: str


class RunAttemptInput(BaseModel):
    """One training attempt: the spec, the run it belongs to and its number."""

    job_id: str
    run_id: str
    attempt: int
    spec: TrainingSpec
    # True when pull_image made the image ready on this worker and the attempt was sent to
    # its own task queue; attempts of runs started before pull_image existed pull for
    # themselves.
    image_ready: bool = False
    # GPU ids leased for this attempt on its worker (None: no lease, as before leases).
    gpus: list[str] | None = None
    # The run's placement epoch this copy runs under (None: runs from before epochs, and
    # runs without a lease). A copy whose epoch is no longer the run's is stale: fenced.
    epoch: int | None = None
    # The attempt gives the run's lease back itself, as soon as its container has exited, if
    # that ends the run: it exited 0, or ``last_attempt`` (no retry is left). Runs from before
    # the ``capacity-release-on-exit`` patch keep the lease until the workflow releases it.
    release_on_exit: bool = False
    last_attempt: bool = False

    _accept_flat = model_validator(mode="before")(_nest_spec)


class CapacityRequest(BaseModel):
    """Admit one run: lease what its resources ask for on some worker, or queue it."""

    job_id: str
    run_id: str
    attempt: int
    resources: dict[str, Any] | None = None


class Admission(BaseModel):
    """The answer to a CapacityRequest: a lease on one worker, or why the run waits."""

    admitted: bool
    host: str | None = None
    task_queue: str | None = None
    gpus: list[str] = Field(default_factory=list)
    queue_reason: str | None = None
    queue_position: int | None = None
    # The run's placement epoch under this lease (None from workers before epochs).
    epoch: int | None = None


class ReleaseCapacity(BaseModel):
    """Give back what a run holds (idempotent) and wake the runs next in the queue."""

    job_id: str
    run_id: str


class AttemptOutcome(BaseModel):
    """How a training attempt ended. Fields added later have defaults: results recorded by
    older workers still decode."""

    exit_code: int
    log_tail: str
    reattached: bool
    timed_out: bool = False
    # The kernel killed the trainer for exceeding its memory limit (``memory_limit``, "64m").
    oom_killed: bool = False
    memory_limit: str | None = None


class RunStatusUpdate(BaseModel):
    """One status transition of a run; applying it twice has the effect of applying it once."""

    job_id: str
    run_id: str
    status: JobStatus
    attempt: int
    retry_count: int
    at: datetime
    error_message: str | None = None
    exit_code: int | None = None


class TrainingRunResult(BaseModel):
    job_id: str
    run_id: str
    status: JobStatus
    attempts: int
    exit_code: int | None
    # A schedule firing skipped because another run held the job (no run was recorded).
    skipped: str | None = None
