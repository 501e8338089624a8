"""Job and run status: the vocabulary shared by the API, the store and the workflow."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Status of a run; a job's status is that of its latest run (``pending`` before any)."""

    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_active(self) -> bool:
        """A run in this status still owns the job: PUT, DELETE and retry must wait."""
        return self in (JobStatus.RUNNING, JobStatus.RETRYING)

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
