"""Where each training attempt's output is kept, for the logs endpoint and error messages."""

from __future__ import annotations

import re
from pathlib import Path

_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


def run_log_dir(log_dir: Path, job_id: str, run_id: str) -> Path:
    return log_dir / _UNSAFE.sub("_", job_id) / _UNSAFE.sub("_", run_id)


def attempt_log_path(log_dir: Path, job_id: str, run_id: str, attempt: int) -> Path:
    """The file an attempt's output is written to as it runs, kept after the container is gone."""
    return run_log_dir(log_dir, job_id, run_id) / f"attempt-{attempt}.log"


def attempt_logs(log_dir: Path, job_id: str, run_id: str) -> list[tuple[int, Path]]:
    """``(attempt, path)`` of every attempt of a run that left a log, in attempt order."""
    found = []
    for path in run_log_dir(log_dir, job_id, run_id).glob("attempt-*.log"):
        number = path.stem.removeprefix("attempt-")
        if number.isdigit():
            found.append((int(number), path))
    return sorted(found)


def last_lines(text: str, count: int) -> str:
    return "\n".join(text.splitlines()[-count:]) if count > 0 else ""
