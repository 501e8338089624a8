"""SQL tables: job definitions, per-run records, issued ids and the schedule-sync journal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Actors are API key names (KEY_NAME_PATTERN allows 64 characters), "anonymous" or "ui/cli".
ACTOR_LENGTH = 64


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime}


class Job(Base):
    """A job definition and the mirror of its latest run's outcome."""

    __tablename__ = "jobs"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    image: Mapped[str] = mapped_column(String(512))
    command: Mapped[list[str]] = mapped_column(JSON)
    schedule: Mapped[str | None] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    overlap_policy: Mapped[str] = mapped_column(String(16), default="skip")
    catchup_window_seconds: Mapped[int | None] = mapped_column(Integer)
    # Mirror of the schedule's state, kept within RECONCILE_INTERVAL_SECONDS of Temporal's.
    paused: Mapped[bool] = mapped_column(default=False)
    next_run_at: Mapped[datetime | None]
    max_retries: Mapped[int] = mapped_column(Integer)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    checkpoint_path: Mapped[str] = mapped_column(String(1024))
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Names only: the worker resolves the values from its own environment at run time.
    secret_env: Mapped[list[str]] = mapped_column(JSON, default=list)
    resources: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    timeout_seconds: Mapped[int | None] = mapped_column(Integer)
    resume_policy: Mapped[str] = mapped_column(String(16), default="retries")
    notifications: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    error_message: Mapped[str | None] = mapped_column(Text)
    latest_run_id: Mapped[str | None] = mapped_column(String(255))
    # Before 0.4: why the next schedule-triggered run starts (`retry`, `manual`), consumed by
    # that run. Never written any more; still read for runs triggered before the upgrade.
    pending_trigger: Mapped[str | None] = mapped_column(String(16))
    # Who asked for that run (an API key's name), consumed with it.
    pending_actor: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    created_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    updated_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    # Order in the capacity queue: higher first, then the run's start (submission) time.
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The claim: the workflow id of the job's one active run (see store/claims.py), taken with
    # a conditional UPDATE so that two API replicas or workers cannot both win it.
    active_run_id: Mapped[str | None] = mapped_column(String(255))
    claimed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Bumped by every change of the definition made through PUT; the ETag is derived from it,
    # and writers compare-and-set on it (jobs/definition_sync.py).
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    __table_args__ = (
        Index("ix_jobs_created_at", "created_at"),
        Index("ix_jobs_status_created_at", "status", "created_at"),
        # Keyset pages: (created_at, job_id) is the order of GET /jobs.
        Index("ix_jobs_created_at_job_id", "created_at", "job_id"),
        Index("ix_jobs_status_created_at_job_id", "status", "created_at", "job_id"),
        Index("ix_jobs_claimed_at", "claimed_at"),
    )


class Run(Base):
    """One workflow execution of a job: a scheduled firing, a retry, a manual or SDK start."""

    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Temporal's id of the execution; a workflow id can be reused by a later execution.
    execution_id: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(16))
    # The firing time Temporal started the run for (None for runs not started by a schedule).
    scheduled_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)
    # Last PROGRESS report of the trainer: step, total, epoch, metrics.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    progress_updated_at: Mapped[datetime | None]
    started_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    # Who started the run (None: the schedule or an SDK start) and who cancelled it.
    triggered_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    cancelled_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    # Where the run was placed (the worker's name) and the GPU ids it leased there.
    host: Mapped[str | None] = mapped_column(String(255))
    gpus: Mapped[list[str] | None] = mapped_column(JSON)
    # Bumped at each placement on a host: a copy of the run started under an older epoch is
    # stale (its host was taken for lost), and nothing it reports is recorded.
    placement_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Why a queued run waits, in words people can act on.
    queue_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_runs_job_id_started_at", "job_id", "started_at"),
        Index("ix_runs_status", "status"),
        Index("ix_runs_job_id_status_started_at", "job_id", "status", "started_at"),
    )


class Attempt(Base):
    """One training attempt of a run: its container's life and exit code."""

    __tablename__ = "attempts"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    exit_code: Mapped[int | None] = mapped_column(Integer)


class Checkpoint(Base):
    """A checkpoint file a run wrote under the job's checkpoint directory."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(String(255))
    attempt: Mapped[int] = mapped_column(Integer)
    # Relative to the job's checkpoint directory.
    path: Mapped[str] = mapped_column(String(1024))
    step: Mapped[int | None] = mapped_column(Integer)
    # Of the file, or the total of a directory's files; checkpoints of many GiB are common.
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # Newest modification time (ns) of the file or directory tree when sha256 was computed:
    # with size_bytes and path, the key under which sha256 is reused instead of re-read.
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("job_id", "path", "sha256", name="uq_checkpoints_job_path_sha"),
        Index("ix_checkpoints_job_id_step", "job_id", "step"),
    )


class MetricHistory(Base):
    """What a run's metric history holds: points per metric name, and values turned away."""

    __tablename__ = "metric_histories"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id", ondelete="CASCADE"))
    # {metric name: points stored}: read at every write, so no write counts rows.
    series: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    # Values of names beyond the run's cap on metric names.
    ignored_values: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime]

    __table_args__ = (Index("ix_metric_histories_job_id", "job_id"),)


class MetricPoint(Base):
    """One value of one metric at one step of a run (a later report of the step replaces it)."""

    __tablename__ = "metric_points"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime]
    value: Mapped[float] = mapped_column(Float)


class LogChunk(Base):
    """A piece of an attempt's log, shipped by the worker so that any API replica serves it.

    The chunks of an attempt mirror its log file on the worker's disk: ``start`` is the
    chunk's offset in the file, a multiple of the chunk size, and every chunk but the last is
    full. The file's own bound (MAX_LOG_BYTES_PER_ATTEMPT) bounds the chunks.
    """

    __tablename__ = "log_chunks"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (Index("ix_log_chunks_job_id", "job_id"),)


class NotificationDelivery(Base):
    """One notification of one run transition on one channel: sent at most once."""

    __tablename__ = "notification_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(String(255))
    # The transition, e.g. "retrying#2": status and attempt.
    event: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("run_id", "event", "channel", name="uq_deliveries_run_event_channel"),
        Index("ix_deliveries_job_id", "job_id"),
    )


class ScheduleEvent(Base):
    """A pause or resume of a job's schedule, by the API or seen made in the UI or CLI."""

    __tablename__ = "schedule_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    at: Mapped[datetime]

    __table_args__ = (Index("ix_schedule_events_job_id_at", "job_id", "at"),)


class Backfill(Base):
    """A backfill the API asked for: runs scheduled in its range are marked ``backfill``."""

    __tablename__ = "backfills"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id", ondelete="CASCADE"))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    created_at: Mapped[datetime]
    actor: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))

    __table_args__ = (Index("ix_backfills_job_id", "job_id"),)


class IssuedJobId(Base):
    """Every job id ever handed out, so an id is never reused, not even after DELETE."""

    __tablename__ = "issued_job_ids"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    issued_at: Mapped[datetime]


class ScheduleSync(Base):
    """Journal of schedule changes in flight.

    Written and committed before the API touches a Temporal Schedule and removed once SQL and
    Temporal agree. An entry left behind by a crash is replayed by the reconciler, which makes
    the schedule match whatever SQL holds (the job row, or its absence).
    """

    __tablename__ = "schedule_syncs"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Refreshed by every request that journals the job: an entry younger than the replay's
    # grace may belong to a request still in flight.
    requested_at: Mapped[datetime]
    # Who journalled last: a request clears the entry only while it is still its own.
    token: Mapped[str | None] = mapped_column(String(32))
    # What the journalled changes were about (bit flags of jobs.schedule_parts.SchedulePart),
    # OR-ed over every request that journalled the job since the entry was last cleared.
    parts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AuditEvent(Base):
    """Who changed what through the API; kept when the job is deleted (no foreign key)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    # create, update, delete, retry, trigger, cancel, pause, resume, backfill
    action: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_audit_events_job_id_at", "job_id", "at"),)


class IdempotencyRecord(Base):
    """The answer to a POST sent with an ``Idempotency-Key``, replayed for 24 hours."""

    __tablename__ = "idempotency_keys"

    actor: Mapped[str] = mapped_column(String(ACTOR_LENGTH), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # sha256 of method, path and body: the same key with another request is a conflict.
    request_hash: Mapped[str] = mapped_column(String(64))
    # None while the first request is still being answered.
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)


class WorkerHost(Base):
    """A worker and its inventory, as it registered and last renewed (heartbeat) it.

    Keyed by its own task queue, ``<TASK_QUEUE>-<WORKER_NAME>``: deployments (``pool``, their
    shared TASK_QUEUE) may share a database. GPU leases are by worker name, the host.
    """

    __tablename__ = "workers"

    task_queue: Mapped[str] = mapped_column(String(512), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    pool: Mapped[str] = mapped_column(String(255))
    gpus: Mapped[list[str]] = mapped_column(JSON, default=list)
    cpus: Mapped[float] = mapped_column(Float)
    memory_bytes: Mapped[int] = mapped_column(BigInteger)
    max_attempts: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]


class RunLease(Base):
    """What one run holds on one worker: its GPUs (rows of gpu_leases), CPUs and memory."""

    __tablename__ = "run_leases"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    job_id: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    gpus: Mapped[list[str]] = mapped_column(JSON, default=list)
    cpus: Mapped[float] = mapped_column(Float, default=0.0)
    memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    leased_at: Mapped[datetime]

    __table_args__ = (Index("ix_run_leases_host", "host"),)


class GpuLease(Base):
    """One GPU of one worker held by one run: the primary key is what makes it exclusive."""

    __tablename__ = "gpu_leases"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    gpu: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("run_leases.run_id", ondelete="CASCADE"))
    leased_at: Mapped[datetime]

    __table_args__ = (Index("ix_gpu_leases_run_id", "run_id"),)


class QueuedRun(Base):
    """A run waiting for capacity, with what it asks for and its place in the order."""

    __tablename__ = "capacity_queue"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    job_id: Mapped[str] = mapped_column(String(32))
    # The deployment (TASK_QUEUE) whose workers it waits for.
    pool: Mapped[str] = mapped_column(String(255))
    priority: Mapped[int] = mapped_column(Integer)
    submitted_at: Mapped[datetime]
    # GPUs asked for; -1 means all of one worker's.
    gpus: Mapped[int] = mapped_column(Integer)
    cpus: Mapped[float] = mapped_column(Float)
    memory_bytes: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_capacity_queue_order", "pool", "priority", "submitted_at"),)


class Lease(Base):
    """A named lease (the reconciler's leadership): held by ``holder`` until ``expires_at_ms``."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    # Milliseconds since the epoch, by the holder's clock.
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)


class Counter(Base):
    """A count as of the last fold; the count now adds its ``counter_deltas`` rows.

    ``jobs:<status>``, ``jobs:paused``, ``jobs:scheduled``, ``runs:<status>``,
    ``runs:retries`` and ``deliveries:failed`` (migration 0007 creates rows and triggers).
    """

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class CounterDelta(Base):
    """A change of a counter, appended by SQL triggers in the same transaction as the change.

    Appending (never updating one row) leaves concurrent writers nothing to wait for; the
    reconciler's leader folds the deltas into ``counters`` at each tick.
    """

    __tablename__ = "counter_deltas"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    name: Mapped[str] = mapped_column(String(64))
    delta: Mapped[int] = mapped_column(BigInteger)
