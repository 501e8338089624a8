"""The REST API's request bodies: a job's spec (create, update) and the run controls."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
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
    Note,
    NotificationSettings,
    OverlapPolicy,
    Resources,
    SecretEnv,
    TimeoutSeconds,
    Timezone,
)
from jobs.strict import JSON_INT, IsoDateTime
from workflows.models import ResumePolicy

Priority = Annotated[int, Field(ge=-1_000_000, le=1_000_000), JSON_INT]


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
    paused: StrictBool = False
    max_retries: MaxRetries = 3
    checkpoint_path: CheckpointPath | None = None
    env: Env = Field(default_factory=dict)
    secret_env: SecretEnv = Field(default_factory=list)
    resources: Resources | None = None
    timeout_seconds: TimeoutSeconds | None = None
    resume_policy: ResumePolicy = ResumePolicy.RETRIES
    notifications: NotificationSettings | None = None
    # Order in the capacity queue: higher first, then submission time.
    priority: Priority = 0

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


def _null_only_where_allowed(schema: dict[str, Any]) -> None:
    """The schema of JobUpdate: ``null`` only for the fields that null clears."""
    for name, field in schema.get("properties", {}).items():
        variants = field.get("anyOf")
        if name in NULLABLE_ON_UPDATE or not variants:
            continue
        kept = [variant for variant in variants if variant != {"type": "null"}]
        del field["anyOf"]
        if len(kept) == 1:
            field.update(kept[0])
        else:
            field["anyOf"] = kept
        if field.get("default", "") is None:
            del field["default"]


class JobUpdate(BaseModel):
    """Body of ``PUT /jobs/{job_id}``: fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_null_only_where_allowed)

    name: JobName | None = None
    image: ImageRef | None = None
    command: Command | None = None
    schedule: CronSchedule | None = None
    timezone: Timezone | None = None
    overlap_policy: OverlapPolicy | None = None
    catchup_window_seconds: CatchupWindowSeconds | None = None
    paused: StrictBool | None = None
    max_retries: MaxRetries | None = None
    checkpoint_path: CheckpointPath | None = None
    env: Env | None = None
    secret_env: SecretEnv | None = None
    resources: Resources | None = None
    timeout_seconds: TimeoutSeconds | None = None
    resume_policy: ResumePolicy | None = None
    notifications: NotificationSettings | None = None
    priority: Priority | None = None

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


class NoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Note | None = None


class TriggerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow_overlap: StrictBool = False


class BackfillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: IsoDateTime
    end: IsoDateTime
    overlap_policy: OverlapPolicy = "buffer_all"
    dry_run: StrictBool = False

    @model_validator(mode="after")
    def _ordered(self) -> BackfillRequest:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self
