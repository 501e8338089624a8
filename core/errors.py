"""Domain errors; the API maps each to a status code and the guide's error body in one place."""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base of the errors a client can cause or must be told about."""

    error_type = "InternalError"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(OrchestratorError):
    error_type = "ValidationError"


class JobNotFound(OrchestratorError):
    error_type = "JobNotFound"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Job {job_id} not found")
        self.job_id = job_id


class JobRunning(OrchestratorError):
    error_type = "JobRunning"

    def __init__(self, job_id: str, status: str, action: str) -> None:
        super().__init__(f"Cannot {action} job {job_id} while it is {status}")


class DuplicateJobName(OrchestratorError):
    error_type = "DuplicateJobName"

    def __init__(self, name: str) -> None:
        super().__init__(f"A job named {name!r} already exists")


class ServiceUnavailable(OrchestratorError):
    error_type = "ServiceUnavailable"


class JobNotRunning(OrchestratorError):
    error_type = "JobNotRunning"

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"Job {job_id} has no running run to cancel (status: {status})")


class IdempotencyConflict(OrchestratorError):
    error_type = "IdempotencyConflict"


class CheckpointPathConflict(OrchestratorError):
    """Another job's checkpoint directory lies inside this one's, or contains it."""

    error_type = "CheckpointPathConflict"


class PreconditionFailed(OrchestratorError):
    """An ``If-Match`` naming a version of the job that is no longer the current one."""

    error_type = "PreconditionFailed"

    def __init__(self, job_id: str, current: str) -> None:
        super().__init__(
            f"Job {job_id} has changed since the version If-Match names (current ETag: "
            f"{current}); read it again and re-apply the change"
        )
