"""How the CLI shows jobs: Rich tables, a key/value view and the live progress bar of ``watch``."""

from __future__ import annotations

import json
import os
import re
import shlex
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text


class JobStatus(StrEnum):
    """The API's job statuses, repeated here because the CLI imports nothing from the server."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
_STATUS_STYLES = {
    "queued": "magenta",
    "pending": "yellow",
    "running": "cyan",
    "retrying": "magenta",
    "completed": "green",
    "failed": "red",
    "cancelled": "dim",
}


# Characters that would drive the terminal (ESC sequences, CR, BEL, ...) or reorder what the
# reader sees (bidi overrides): the API refuses them in names, but an older row, a trainer's
# error message or a hostile server could still carry them. They are shown escaped: "\\x1b".
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# In output shown line by line (logs), newlines and tabs are the text's own.
_UNPRINTABLE_IN_LINES = re.compile(
    rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\x8e\x8f\xaa-\xae]|\xe2\x81[\xa6-\xa9]"
)


def printable(value: Any) -> Any:
    """``value`` with every string in it (nested too) free of control characters."""
    if isinstance(value, str):
        return _UNPRINTABLE.sub(lambda m: m[0].encode("unicode_escape").decode(), value)
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(item) for item in value]
    return value


def printable_lines(chunk: bytes) -> bytes:
    """Output for a terminal: control characters other than newline and tab dropped."""
    return _UNPRINTABLE_IN_LINES.sub(b"", chunk)


def out() -> Console:
    # No automatic highlighting: job names and commands are shown exactly as they are.
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped into grep or a file, rows must not be cut to fit Rich's default 80 columns.
        console.width = 200
    return console


def show_job(job: dict[str, Any], as_json: bool, headline: str, details: bool = True) -> None:
    """A one-line outcome and the job's fields, or only the raw JSON with ``--json``."""
    if as_json:
        typer.echo(json_text(job))
        return
    console = out()
    console.print(Text(printable(headline), style="bold"))
    if details:
        console.print(job_details(job))


def json_text(data: Any) -> str:
    """Plain indented JSON, no colours, so that it pipes into ``jq`` unchanged."""
    return json.dumps(data, indent=2)


def job_table(jobs: list[dict[str, Any]]) -> Table:
    """One row per job: id, name, status, schedule, retries, progress and last update."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    # Ids are what users copy into the next command: never wrap or shorten them.
    table.add_column("ID", no_wrap=True, min_width=14)
    table.add_column("NAME", overflow="fold")
    table.add_column("STATUS", no_wrap=True)
    table.add_column("SCHEDULE", overflow="fold")
    table.add_column("RETRIES", justify="right", no_wrap=True)
    table.add_column("PROGRESS", justify="right", no_wrap=True)
    table.add_column("UPDATED", no_wrap=True)
    for job in map(printable, jobs):
        table.add_row(
            Text(job["job_id"]),
            Text(job["name"]),
            status_text(job["status"]),
            Text(job.get("schedule") or "-"),
            f"{job['retry_count']}/{job['max_retries']}",
            percent_text(job.get("progress")),
            age(job.get("updated_at")),
        )
    return table


def job_details(job: dict[str, Any]) -> Text:
    """Every field of a job, one per line, in the order a person reads them."""
    job = printable(job)
    resources = job.get("resources") or {}
    rows: list[tuple[str, str | Text]] = [
        ("job_id", job["job_id"]),
        ("name", job["name"]),
        ("status", status_text(job["status"])),
        ("image", job["image"]),
        ("command", shlex.join(job["command"])),
        ("schedule", job.get("schedule") or "- (one-off)"),
        ("retries", f"{job['retry_count']} of {job['max_retries']}"),
        ("checkpoint_path", job["checkpoint_path"]),
        ("env", " ".join(f"{k}={v}" for k, v in (job.get("env") or {}).items()) or "-"),
        ("secret_env", " ".join(job.get("secret_env") or []) or "-"),
        ("resources", " ".join(f"{k}={v}" for k, v in resources.items() if v is not None) or "-"),
        ("timeout_seconds", _or_dash(job.get("timeout_seconds"))),
        ("resume_policy", job["resume_policy"]),
        ("notifications", _or_dash(job.get("notifications") and json.dumps(job["notifications"]))),
        ("progress", progress_text(job.get("progress"))),
        ("error_message", _or_dash(job.get("error_message"))),
        ("latest_run_id", _or_dash(job.get("latest_run_id"))),
        ("started_at", _or_dash(job.get("started_at"))),
        ("completed_at", _or_dash(job.get("completed_at"))),
        ("created_at", job["created_at"]),
        ("updated_at", job["updated_at"]),
    ]
    # Plain lines rather than a grid: a grid pads every row to its widest value.
    width = max(len(key) for key, _ in rows) + 2
    lines = [
        Text.assemble((key.ljust(width), "bold"), value if isinstance(value, Text) else Text(value))
        for key, value in rows
    ]
    return Text("\n").join(lines)


def outcome_text(job: dict[str, Any]) -> Text:
    """``Job train-x completed.`` or ``Job train-x failed: <why>``, once a job is over."""
    job = printable(job)
    status = job["status"]
    reason = f": {job['error_message']}" if job.get("error_message") else "."
    return Text(f"Job {job['job_id']} {status}{reason}", style=_STATUS_STYLES.get(status, ""))


def status_text(status: str) -> Text:
    return Text(status, style=_STATUS_STYLES.get(status, ""))


def percent_text(progress: dict[str, Any] | None) -> str:
    percent = (progress or {}).get("percent")
    return "-" if percent is None else f"{percent:.0f}%"


def progress_text(progress: dict[str, Any] | None) -> str:
    """``step 3/5 (60%), epoch 1, loss=0.31`` from the trainer's last report."""
    if not progress:
        return "-"
    parts = []
    if progress.get("step") is not None:
        total = progress.get("total")
        parts.append(f"step {progress['step']}/{total if total is not None else '?'}")
        if progress.get("percent") is not None:
            parts[-1] += f" ({progress['percent']:.0f}%)"
    parts.extend(_details(progress))
    return ", ".join(parts) or "-"


def age(value: str | None, now: datetime | None = None) -> str:
    """``12s ago``, ``5m ago``, ``3h ago``, ``2d ago``: short, and the same in every time zone."""
    if not value:
        return "-"
    try:
        then = datetime.fromisoformat(value)
    except ValueError:
        return value
    if then.tzinfo is None:  # the API writes UTC
        then = then.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _details(progress: dict[str, Any]) -> list[str]:
    parts = [] if progress.get("epoch") is None else [f"epoch {progress['epoch']:g}"]
    parts.extend(f"{key}={value:.4g}" for key, value in (progress.get("metrics") or {}).items())
    return parts


def _or_dash(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


class WatchDisplay:
    """A live progress bar for one job, fed a fresh job body on every poll."""

    def __init__(self, job_id: str, console: Console) -> None:
        self._job_id = job_id
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[details]}"),
            console=console,
        )
        self._task: TaskID = self._progress.add_task(
            escape(job_id), total=None, start=True, details=""
        )

    def __enter__(self) -> WatchDisplay:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def update(self, job: dict[str, Any], note: str = "") -> None:
        """Show the job's status and its trainer's latest ``PROGRESS`` report."""
        job = printable(job)
        progress = job.get("progress") or {}
        status = job["status"]
        style = _STATUS_STYLES.get(status, "default")
        description = f"{escape(self._job_id)} [{style}]{escape(status)}[/]"
        details = ", ".join(_details(progress))
        if note:
            details = f"{details} ({note})" if details else note
        self._progress.update(
            self._task,
            description=description,
            # Without a known total Rich shows a pulsing bar: the trainer has not said yet.
            total=progress.get("total"),
            completed=progress.get("step") or 0,
            details=escape(details),
        )


def worker_table(workers: list[dict[str, Any]], now: datetime | None = None) -> Table:
    """Workers: GPUs free of total, CPUs, memory, running runs, last heartbeat."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("WORKER", "STATE", "GPUS FREE", "FREE IDS", "CPUS", "MEMORY", "RUNS", "SEEN"):
        table.add_column(column)
    for worker in workers:
        table.add_row(
            worker["name"],
            Text("alive", style="green") if worker["alive"] else Text("lost", style="red"),
            f"{worker['gpus_free']}/{worker['gpus_total']}",
            ",".join(worker["free_gpus"]) or "-",
            f"{worker['cpus_free']:g}/{worker['cpus']:g}",
            f"{worker['memory_bytes'] / 1024**3:.1f} GiB",
            "\n".join(worker["running_runs"]) or "-",
            age(worker["last_seen_at"], now),
        )
    return table
