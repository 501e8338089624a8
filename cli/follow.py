"""Following a job as it runs: its output for ``jobs logs`` and its progress for ``jobs watch``."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import typer
from rich.console import Console

from cli.client import ApiError, ApiUnreachable, OrchestratorClient
from cli.render import FINAL_STATUSES, WatchDisplay, printable_lines

# How long `watch` keeps polling through an API restart or outage before it gives up.
OUTAGE_GRACE_SECONDS = 60.0
_PENDING_POLL_SECONDS = 1.0


def write_logs(api: OrchestratorClient, job_id: str, tail: int | None, follow: bool) -> None:
    """Copy the latest run's output to stdout byte for byte; with ``follow``, as it arrives.

    On a terminal, control characters other than newline and tab are dropped: a trainer's
    output must not be able to drive the reader's terminal.
    """
    stdout = sys.stdout.buffer
    clean = printable_lines if sys.stdout.isatty() else bytes
    try:
        if not follow:
            stdout.write(clean(api.logs(job_id, tail)))
            return
        _wait_while_pending(api, job_id)
        for chunk in api.follow_logs(job_id, tail):
            stdout.write(clean(chunk))
            stdout.flush()
    except BrokenPipeError:
        # The reader (`| head`) is gone: stop quietly, and keep Python's exit-time flush quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _wait_while_pending(api: OrchestratorClient, job_id: str) -> None:
    # Until its run starts, a pending job's logs are those of an earlier run, or none.
    announced = False
    while api.get_job(job_id)["status"] == "pending":
        if not announced:
            typer.echo(f"waiting for job {job_id}'s run to start...", err=True)
            announced = True
        time.sleep(_PENDING_POLL_SECONDS)


def watch_until_final(
    api: OrchestratorClient, job_id: str, console: Console, interval: float
) -> dict[str, Any]:
    """Poll the job every ``interval`` seconds, drawing its progress; return it once final.

    A short API outage (no answer, or a 5xx) is waited out for up to OUTAGE_GRACE_SECONDS.
    """
    job = api.get_job(job_id)  # an unknown job fails here, before any display
    with WatchDisplay(job_id, console) as display:
        display.update(job)
        failing_since: float | None = None
        while job["status"] not in FINAL_STATUSES:
            time.sleep(interval)
            try:
                job = api.get_job(job_id)
            except (ApiUnreachable, ApiError) as err:
                if isinstance(err, ApiError) and err.status_code < 500:
                    raise
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > OUTAGE_GRACE_SECONDS:
                    raise
                display.update(job, note="API not answering, still trying")
                continue
            failing_since = None
            display.update(job)
    return job
