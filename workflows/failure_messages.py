"""The error messages of a failed run: what happened, bounded for Temporal's payloads.

Pure functions of an attempt's outcome or an activity's failure, used by the workflow (and
so deterministic); kept apart so the workflow module is only the workflow.
"""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ApplicationError

from workflows.models import IMAGE_UNAVAILABLE, AttemptOutcome

# error_message travels in Temporal payloads (status updates, notifications, the failure):
# bounded whatever an attempt's result carries (older workers sent unbounded log tails).
MAX_ERROR_MESSAGE_BYTES = 16 * 1024
_CUT = "[... cut]"


def describe_exit(outcome: AttemptOutcome, attempt: int, attempts_allowed: int) -> str:
    message = f"Attempt {attempt}/{attempts_allowed} exited with code {outcome.exit_code}"
    if outcome.timed_out:
        message = f"Attempt {attempt}/{attempts_allowed} timed out and was stopped"
        message += f" (exit code {outcome.exit_code})"
    elif outcome.oom_killed:
        limit = f", limit {outcome.memory_limit}" if outcome.memory_limit else ""
        message = f"Attempt {attempt}/{attempts_allowed} was killed: out of memory{limit}"
        message += f" (exit code {outcome.exit_code})"
    if outcome.log_tail.strip():
        message += "; last log lines:\n"
        tail = outcome.log_tail.rstrip()
        room = MAX_ERROR_MESSAGE_BYTES - len(message.encode())
        if len(tail.encode()) > room:
            # The last lines say most about the exit: it is the oldest part that is cut.
            tail = f"{_CUT}\n{_last_bytes(tail, room - len(_CUT) - 1)}"
        message += tail
    return _bounded(message)


def _last_bytes(text: str, limit: int) -> str:
    """The end of ``text`` that takes at most ``limit`` bytes in UTF-8."""
    return text.encode()[-limit:].decode(errors="ignore") if limit > 0 else ""


def _bounded(message: str) -> str:
    """``message`` cut to ``MAX_ERROR_MESSAGE_BYTES`` (UTF-8), its start kept."""
    encoded = message.encode()
    if len(encoded) <= MAX_ERROR_MESSAGE_BYTES:
        return message
    kept = encoded[: MAX_ERROR_MESSAGE_BYTES - len(_CUT) - 1]
    return f"{kept.decode(errors='ignore')}\n{_CUT}"


def _root_application_error(err: BaseException) -> ApplicationError | None:
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ApplicationError):
            return cause
        cause = cause.__cause__
    return None


def failure_type(err: ActivityError) -> str:
    app = _root_application_error(err)
    return app.type if app is not None and app.type else "InfrastructureFailure"


def describe_infrastructure_failure(err: ActivityError) -> str:
    app = _root_application_error(err)
    if app is not None:
        reason = app.message
        if app.type == IMAGE_UNAVAILABLE and "gave up" not in reason:
            reason = f"{reason} (gave up after the configured number of pull attempts)"
        return _bounded(reason)
    cause = err.cause
    return _bounded(f"The training attempt could not be run: {cause or err}")
