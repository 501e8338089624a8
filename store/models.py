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
    # The claim: the workflow id of the job's one active run (see store/claims.py), taken with
    # a conditional UPDATE so that two API replicas or workers cannot both win it.
    active_run_id: Mapped[str | None] = mapped_column(String(255))
    claimed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_jobs_created_at", "created_at"),
        Index("ix_jobs_status_created_at", "status", "created_at"),
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

    __table_args__ = (Index("ix_runs_job_id_started_at", "job_id", "started_at"),)


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
    actor: Mapped[str] = mapped_column(String(16))
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
    requested_at: Mapped[datetime]
