"""One settings class for the API, the worker and the dev stack (environment or ``.env``)."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import quote

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.api_keys import KEY_NAME_PATTERN, NamedKey, check_front_door_lists, parse_api_keys
from workflows.models import NotifyEvent

SettingsCheck = Callable[["Settings"], list[str]]
# The notification channels' own checks of their settings. Core may not import the channels
# (lint-imports), so notifications/registry.py adds its check here when it is imported; the
# API, the worker and `make run` import it before they read their settings.
_channel_checks: list[SettingsCheck] = []

# FAULT_PAUSE_AT: test-only points where an activity pauses (see activities.fault_points).
FaultPoint = Literal["pull", "start", "finish", "result"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """Bytes in ``"8g"``, ``"512m"``, ``"1073741824"`` (Docker's units, powers of 1024)."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (examples: 8g, 512m, 1073741824)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def add_channel_check(check: SettingsCheck) -> None:
    """Refuse, from now on, settings in which ``check`` finds problems (messages it returns)."""
    if check not in _channel_checks:
        _channel_checks.append(check)


@dataclass(frozen=True)
class PoolLimits:
    """SQL connection pool of one process: ``size`` kept open, ``max_overflow`` more on demand.

    A request holds at most one connection at a time, so the pool bounds concurrent requests
    that touch SQL, not correctness; ``timeout_seconds`` is how long one waits for a free one.
    """

    size: int = 10
    max_overflow: int = 20
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class LogLimits:
    """MAX_LOG_BYTES_PER_ATTEMPT and MAX_LOG_LINE_BYTES."""

    max_bytes: int
    max_line: int


class Settings(BaseSettings):
    """Every knob, with the defaults `make run` uses on a fresh machine."""

    # hide_input_in_errors: a start-up error must not echo API_KEY, tokens or passwords.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    data_dir: Path = Path(".data")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default: SQLite file under DATA_DIR.",
    )

    database_pool_size: int = Field(default=10, ge=1, le=1000)
    database_max_overflow: int = Field(default=20, ge=0, le=1000)
    database_pool_timeout_seconds: float = Field(default=30.0, gt=0)

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://localhost:8233"
    task_queue: str = "training-jobs"
    # Names this worker's own task queue, <TASK_QUEUE>-<WORKER_NAME>, where the attempts whose
    # image it pulled run. The host name survives restarts (a pid would not), so a restarted
    # worker finds the attempts its predecessor left.
    worker_name: str = Field(default_factory=socket.gethostname, min_length=1)
    rpc_timeout_seconds: float = Field(default=10.0, gt=0)

    # This worker's inventory (see docs/configuration.md#capacity). WORKER_GPUS: GPU ids,
    # comma-separated ("" for none); unset, they are detected through NVML when a driver is
    # present. WORKER_CPUS and WORKER_MEMORY (bytes or "64g") default to what the host has.
    worker_gpus: Annotated[list[str] | None, NoDecode] = None
    worker_cpus: float | None = Field(default=None, gt=0)
    worker_memory: str | None = None
    # Concurrent training attempts on this worker; default: one per GPU plus 24 per CPU.
    worker_max_attempts: int | None = Field(default=None, ge=1, le=1000)
    # false: leased GPU ids reach the container only as CUDA_VISIBLE_DEVICES and
    # NVIDIA_VISIBLE_DEVICES (engines without the NVIDIA runtime, as in tests).
    gpu_device_requests: bool = True
    # How often a worker renews its registration; one not seen for WORKER_LOST_SECONDS
    # counts as gone: no run is placed on it (its runs keep their leases until placed again).
    worker_heartbeat_seconds: float = Field(default=5.0, gt=0)
    worker_lost_seconds: float = Field(default=60.0, gt=0)
    # A queued run is woken when capacity frees; this poll is only the safety net.
    queue_poll_seconds: float = Field(default=30.0, gt=0)

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    enable_api_auth: bool = False
    api_key: SecretStr | None = None
    # The name API_KEY's holder is recorded under (it is always an admin key).
    api_key_name: str = Field(default="admin", pattern=KEY_NAME_PATTERN)
    # Named keys with roles: "name:role:key,name:role:key" (see core/api_keys.py).
    api_keys: SecretStr | None = None
    # Serving on a non-loopback API_HOST with auth off is refused unless this says so.
    allow_unauthenticated: bool = False
    max_body_bytes: int = Field(default=1024 * 1024, ge=4096, le=64 * 1024 * 1024)
    rate_limit_per_minute: int = Field(default=0, ge=0, le=1_000_000)
    # Names (or PREFIX_* patterns) of the worker's variables a job may ask for in secret_env.
    secret_env_allow: Annotated[list[str], NoDecode] = []
    # Domains a job's own notifications.email_to may name; empty: no per-job recipients.
    email_allowed_domains: Annotated[list[str], NoDecode] = []

    runtime: Literal["docker", "process"] = "docker"
    checkpoint_root: Path | None = Field(
        default=None, description="Root of all checkpoint paths; default DATA_DIR/checkpoint-root."
    )
    container_network: str = "bridge"
    docker_host: str | None = Field(
        default=None,
        description="Docker engine of the worker (unix:///..., tcp://...); default: the "
        "DOCKER_HOST environment variable, else the local socket.",
    )
    image_pull_policy: Literal["if-not-present", "always", "never"] = "if-not-present"
    # Hardening of training containers (docs/configuration.md#training-containers).
    container_cap_add: Annotated[list[str], NoDecode] = []
    container_pids_limit: int = Field(default=4096, ge=16, le=4_194_304)
    container_log_max_size: str = Field(default="1g", pattern=r"^[1-9][0-9]{0,5}[kmg]$")
    container_log_max_files: int = Field(default=2, ge=1, le=100)
    container_init: bool = True
    container_user: str | None = Field(default=None, pattern=r"^[0-9]{1,10}(:[0-9]{1,10})?$")

    retry_backoff_seconds: float = Field(default=10.0, ge=0)
    retry_backoff_max_seconds: float = Field(default=600.0, ge=0)
    heartbeat_timeout_seconds: float = Field(default=30.0, gt=0)
    poll_interval_seconds: float = Field(default=2.0, gt=0)
    stop_grace_seconds: float = Field(default=10.0, ge=0)
    # Consecutive infrastructure failures (engine unreachable, pull failed, ...) one training
    # attempt may have before the run fails; worker losses never count.
    infra_max_attempts: int = Field(default=5, ge=1)
    # How long a run's placed host may stay unreachable (its worker taking nothing from its
    # own task queue) before the run is placed again elsewhere, from its latest checkpoint,
    # under the next placement epoch. HOST_LOSS_TIMEOUT_SECONDS is its former name.
    host_lost_seconds: float = Field(
        default=600.0,
        gt=0,
        validation_alias=AliasChoices(
            "host_lost_seconds", "host_loss_timeout_seconds", "HOST_LOST_SECONDS"
        ),
    )
    # How long a worker may fail to renew its registration (the database did not take its
    # heartbeat, or Temporal did not answer) before it stops its own training containers:
    # before its leases expire and before its runs are placed elsewhere. Unset: half of the
    # smaller of WORKER_LOST_SECONDS and HOST_LOST_SECONDS; if set, it must be below both and
    # above WORKER_HEARTBEAT_SECONDS (see docs/deployment.md#several-gpu-hosts).
    self_fence_seconds: float | None = Field(default=None, gt=0)
    # How long an attempt whose container was running waits for its unreachable engine
    # (restarting, say) before that counts as one infrastructure failure.
    engine_outage_seconds: float = Field(default=300.0, ge=0)
    reconcile_interval_seconds: float = Field(default=30.0, gt=0)
    # How long the SQL-Temporal reconciler's leadership lasts unless renewed (each tick
    # renews it): a dead leader is replaced within this. Keep it above the interval.
    leader_lease_seconds: float = Field(default=90.0, gt=0)
    # A job's claim (its one active run) with no workflow behind it for this long is released
    # by the worker's reconciler: an API that died between claim and start_workflow.
    claim_grace_seconds: float = Field(default=120.0, gt=0)
    backfill_max_firings: int = Field(default=1000, ge=1)
    # The longest range one backfill may cover (dry run or not).
    backfill_max_range_days: int = Field(default=3660, ge=1, le=366_000)
    # An attempt's log file keeps its first half and its newest part within this many bytes;
    # a longer output line is split (and marked) at MAX_LOG_LINE_BYTES.
    max_log_bytes_per_attempt: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)
    max_log_line_bytes: int = Field(default=64 * 1024, ge=256, le=16 * 1024 * 1024)
    # "database": workers ship each attempt's log to the database (a mirror of the file, in
    # chunks, within the same bound) and the API serves /logs from there, so API replicas and
    # worker hosts need no shared disk. "files": the API reads the workers' files (one disk).
    log_storage: Literal["database", "files"] = "database"
    max_spec_bytes: int = Field(default=256 * 1024, ge=1024, le=1024 * 1024)
    """MAX_SPEC_BYTES: the most a job's ``command``, ``env`` and ``secret_env`` may take together.

    Measured as the sum of their JSON encodings (UTF-8), which is how they travel in every
    run's Temporal payloads (the run plan, each attempt's input); Temporal refuses payloads
    over 2 MiB, and a run whose spec does not fit would hang. ``POST /jobs``, SDK
    registration and ``PUT /jobs/{job_id}`` (for the merged result) refuse a bigger spec
    with 400 ``ValidationError``. At most 1 MiB, to leave room for the rest of a payload.
    """
    # How often a running attempt's checkpoint directory is scanned for unannounced files.
    checkpoint_scan_seconds: float = Field(default=10.0, gt=0)

    log_level: str = "INFO"
    # Test-only: activities pause at this point (see activities.fault_points); never set it
    # in production.
    fault_pause_at: FaultPoint | None = None

    # Notifications. Secrets are SecretStr so that no repr, log line or error shows them.
    slack_webhook_url: SecretStr | None = None
    slack_bot_token: SecretStr | None = None
    slack_channel: str | None = None
    slack_api_url: str = "https://slack.com/api/"
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str | None = None
    # NoDecode: the environment gives "a@x.org,b@y.org", not a JSON list.
    smtp_to: Annotated[list[str], NoDecode] = []
    smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    webhook_url: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    notify_on: Annotated[list[NotifyEvent], NoDecode] = ["failed", "retrying", "completed"]
    notify_timeout_seconds: float = Field(default=30.0, gt=0)

    log_format: Literal["text", "json"] = "text"
    # The worker's Temporal SDK metrics (Prometheus) on 127.0.0.1:PORT; None or 0 turns them off.
    worker_metrics_port: int | None = Field(default=9464, ge=0, le=65535)
    # Loopback by default; a container behind Prometheus needs 0.0.0.0.
    worker_metrics_host: str = "127.0.0.1"

    @field_validator(
        "slack_webhook_url",
        "slack_bot_token",
        "slack_channel",
        "smtp_host",
        "smtp_username",
        "smtp_password",
        "smtp_from",
        "webhook_url",
        "webhook_secret",
        "fault_pause_at",
        "api_keys",
        "container_user",
        "self_fence_seconds",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # Compose files pass `SLACK_BOT_TOKEN=` for "not configured".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("worker_gpus", mode="before")
    @classmethod
    def _gpu_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("worker_memory", mode="before")
    @classmethod
    def _memory_size(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        parse_size(str(value))  # raises ValueError naming the variable
        return str(value).strip()

    @field_validator(
        "smtp_to",
        "notify_on",
        "secret_env_allow",
        "email_allowed_domains",
        "container_cap_add",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if info.field_name == "email_allowed_domains" and isinstance(value, list):
            value = [str(domain).lower() for domain in value]
        if info.field_name == "notify_on" and isinstance(value, list):
            # Named here because errors hide their input (see model_config).
            unknown = [event for event in value if event not in get_args(NotifyEvent)]
            if unknown:
                raise ValueError(
                    f"NOTIFY_ON: unknown {unknown}, choose from {get_args(NotifyEvent)}"
                )
        return value

    @model_validator(mode="after")
    def _auth_needs_a_key(self) -> Settings:
        named = parse_api_keys(self.api_keys, self.api_key_name)  # errors never show keys
        has_admin_key = bool(self.api_key and self.api_key.get_secret_value())
        if self.enable_api_auth and not (has_admin_key or named):
            raise ValueError("ENABLE_API_AUTH=true needs API_KEY (or API_KEYS) to be set")
        if self.max_body_bytes <= self.max_spec_bytes:
            raise ValueError("MAX_BODY_BYTES must be larger than MAX_SPEC_BYTES")
        check_front_door_lists(self.secret_env_allow, self.email_allowed_domains)
        return self

    @model_validator(mode="after")
    def _self_fence_before_host_loss(self) -> Settings:
        if (
            min(self.worker_lost_seconds, self.host_lost_seconds)
            <= 2 * self.worker_heartbeat_seconds
        ):
            # A host would count as gone between two of its renewals, and the self-fence's
            # default deadline (half of the smaller) would trip between two of them.
            raise ValueError(
                "WORKER_LOST_SECONDS and HOST_LOST_SECONDS must be more than twice "
                "WORKER_HEARTBEAT_SECONDS: a worker renews its registration every "
                "WORKER_HEARTBEAT_SECONDS, and one that stops its containers (SELF_FENCE_SECONDS, "
                "by default half of the smaller) must not do so between two renewals"
            )
        fence = self.self_fence_seconds
        if fence is None:
            return self
        if fence >= min(self.worker_lost_seconds, self.host_lost_seconds):
            raise ValueError(
                "SELF_FENCE_SECONDS must be below WORKER_LOST_SECONDS and HOST_LOST_SECONDS: a "
                "worker cut off must stop its containers before its leases expire and its runs "
                "are placed again elsewhere"
            )
        if fence <= self.worker_heartbeat_seconds:
            raise ValueError(
                "SELF_FENCE_SECONDS must be above WORKER_HEARTBEAT_SECONDS, or a worker would "
                "stop its containers between two renewals"
            )
        return self

    @property
    def self_fence_deadline(self) -> float:
        """Seconds without a renewal after which the worker stops its training units."""
        if self.self_fence_seconds is not None:
            return self.self_fence_seconds
        return min(self.worker_lost_seconds, self.host_lost_seconds) / 2

    @cached_property
    def named_keys(self) -> list[NamedKey]:
        """Every accepted key: API_KEY (admin, named API_KEY_NAME) and those of API_KEYS."""
        keys = parse_api_keys(self.api_keys, self.api_key_name)
        if self.api_key and self.api_key.get_secret_value():
            keys.insert(0, NamedKey(self.api_key_name, "admin", self.api_key))
        return keys

    @model_validator(mode="after")
    def _notification_channels_are_complete(self) -> Settings:
        # Messages name variables, never values: some of these are secrets.
        problems = [problem for check in _channel_checks for problem in check(self)]
        if problems:
            raise ValueError("invalid notification settings: " + "; ".join(problems))
        return self

    @cached_property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'orchestrator.db').resolve()}"

    @property
    def database_pool(self) -> PoolLimits:
        return PoolLimits(
            self.database_pool_size,
            self.database_max_overflow,
            self.database_pool_timeout_seconds,
        )

    @cached_property
    def checkpoint_root_dir(self) -> Path:
        return (self.checkpoint_root or self.data_dir / "checkpoint-root").resolve()

    def run_ui_url(self, run_id: str) -> str:
        """A run's page in the Temporal Web UI (the run id is the workflow id)."""
        base = self.temporal_ui_url.rstrip("/")
        namespace = quote(self.temporal_namespace, safe="")
        return f"{base}/namespaces/{namespace}/workflows/{quote(run_id, safe='')}"

    @property
    def deployment(self) -> str:
        """Names this orchestrator among others that may share a Docker engine."""
        return f"{self.temporal_address}/{self.temporal_namespace}/{self.task_queue}"

    @property
    def worker_task_queue(self) -> str:
        """The task queue only this worker polls: attempts run here after their pull."""
        return f"{self.task_queue}-{self.worker_name}"

    @property
    def worker_memory_bytes(self) -> int | None:
        return parse_size(self.worker_memory) if self.worker_memory else None

    @property
    def log_limits(self) -> LogLimits:
        return LogLimits(self.max_log_bytes_per_attempt, self.max_log_line_bytes)

    @cached_property
    def log_dir(self) -> Path:
        return (self.data_dir / "logs").resolve()
