"""The facts of one run transition, gathered once and rendered by every channel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# How workflows/training.py joins an attempt's last log lines to its error message.
LOG_LINES_MARKER = "; last log lines:\n"
MAX_LOG_LINES = 15
MAX_LOG_CHARS = 2000

STATUS_EMOJI = {
    "running": ":arrow_forward:",
    "retrying": ":repeat:",
    "completed": ":white_check_mark:",
    "failed": ":x:",
    "cancelled": ":no_entry_sign:",
}


@dataclass(frozen=True)
class RunFacts:
    """What a notification says about a run's transition; channels only format it."""

    job_id: str
    job_name: str
    run_id: str
    status: str
    attempt: int
    attempts_allowed: int
    duration: timedelta | None
    exit_code: int | None
    error: str | None
    log_lines: str | None
    progress: str | None
    run_url: str
    occurred_at: datetime
    started_at: datetime

    @property
    def event(self) -> str:
        """The transition's key in delivery bookkeeping, e.g. ``retrying#2``."""
        return f"{self.status}#{self.attempt}"

    @property
    def title(self) -> str:
        return f"Job {self.job_name} ({self.job_id}) {self.status}"

    def fields(self) -> list[tuple[str, str]]:
        """Label/value pairs in display order; absent facts are left out."""
        pairs = [
            ("Job", f"{self.job_name} ({self.job_id})"),
            ("Status", self.status),
            ("Run", self.run_id),
            ("Attempt", f"{self.attempt} of {self.attempts_allowed}"),
        ]
        if self.duration is not None:
            pairs.append(("Duration", format_duration(self.duration)))
        if self.exit_code is not None:
            pairs.append(("Exit code", str(self.exit_code)))
        if self.progress:
            pairs.append(("Progress", self.progress))
        return pairs

    def plain_text(self) -> str:
        """Every fact as plain text: Slack's fallback and the email's text part."""
        lines = [self.title, ""]
        lines += [f"{label}: {value}" for label, value in self.fields()]
        if self.error:
            lines += ["", f"Error: {self.error}"]
        if self.log_lines:
            lines += ["", "Last log lines:", self.log_lines]
        lines += ["", f"Temporal UI: {self.run_url}"]
        return "\n".join(lines)


def split_error(message: str | None) -> tuple[str | None, str | None]:
    """The error's first part and its last log lines (bounded, for chat and mail)."""
    if not message:
        return None, None
    error, _, logs = message.partition(LOG_LINES_MARKER)
    logs = "\n".join(logs.rstrip().splitlines()[-MAX_LOG_LINES:])
    if len(logs) > MAX_LOG_CHARS:
        logs = "…" + logs[-MAX_LOG_CHARS:]
    return error, logs or None


def describe_progress(progress: dict[str, Any] | None) -> str | None:
    """``step 80/100 (80%), epoch 2, loss=0.31`` from the trainer's last PROGRESS report."""
    if not progress:
        return None
    parts = []
    step, total = progress.get("step"), progress.get("total")
    if step is not None and total:
        parts.append(f"step {step}/{total} ({100 * step / total:.0f}%)")
    elif step is not None:
        parts.append(f"step {step}")
    if progress.get("epoch") is not None:
        parts.append(f"epoch {progress['epoch']}")
    metrics = progress.get("metrics") or {}
    parts += [f"{name}={_number(value)}" for name, value in metrics.items()]
    return ", ".join(parts) or None


def format_duration(duration: timedelta) -> str:
    """``2h 03m 04s``, ``3m 04s`` or ``4.2s``."""
    seconds = duration.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
