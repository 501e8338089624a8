"""Log set-up for the API and the worker: text or one JSON object per line (``LOG_FORMAT``).

Every record that concerns a job or a run carries ``job_id`` and ``run_id``. They come from a
context variable, bound per request by the API (see ``api.log_context``) and per activity by
``supervision.interceptors.LogContextInterceptor``, or from the workflow info Temporal's
loggers attach to the record.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from temporalio import activity, workflow

from core.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Runs started by a schedule have the workflow id "<job id>-<firing time>" (see jobs.temporal).
_JOB_ID_PREFIX = re.compile(r"^(train-[0-9a-f]{8})(?:-|$)")
_job_id: ContextVar[str | None] = ContextVar("log_job_id", default=None)
_run_id: ContextVar[str | None] = ContextVar("log_run_id", default=None)


@contextmanager
def log_context(*, job_id: str | None = None, run_id: str | None = None) -> Iterator[None]:
    """Within the block, log records carry these ids (``None`` clears an outer one)."""
    job_token, run_token = _job_id.set(job_id), _run_id.set(run_id)
    try:
        yield
    finally:
        _run_id.reset(run_token)
        _job_id.reset(job_token)


def bind_job_id(job_id: str) -> None:
    """Tag the rest of the current context's records with this job (a request's path)."""
    _job_id.set(job_id)


def job_id_of_run(run_id: str) -> str | None:
    """The job id a run's workflow id starts with; None for ids chosen by an SDK caller."""
    match = _JOB_ID_PREFIX.match(run_id)
    return match.group(1) if match else None


class LogContextFilter(logging.Filter):
    """Adds ``job_id`` and ``run_id`` (or None) to every record passing the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Temporal's activity and workflow loggers attach the execution's info as a dict.
        temporal: Mapping[str, Any] = (
            getattr(record, "temporal_activity", None)
            or getattr(record, "temporal_workflow", None)
            or {}
        )
        workflow_id = temporal.get("workflow_id")
        run_id = getattr(record, "run_id", None) or _run_id.get() or workflow_id
        job_id = getattr(record, "job_id", None) or _job_id.get()
        if job_id is None and run_id is not None:
            job_id = job_id_of_run(run_id)
        record.job_id, record.run_id = job_id, run_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ids only when the record concerns a job or run."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        temporal = getattr(record, "temporal_activity", None)
        if not isinstance(temporal, Mapping):
            temporal = {}
        fields = {
            "job_id": getattr(record, "job_id", None),
            "run_id": getattr(record, "run_id", None),
            "activity": temporal.get("activity_type"),
            "attempt": temporal.get("attempt"),
        }
        line.update((key, value) for key, value in fields.items() if value is not None)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def build_handler(log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing to ``stream`` (stderr) in the given format, ids filled in."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(LogContextFilter())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    return handler


def configure_logging(settings: Settings) -> None:
    """Route every logger (uvicorn's and Temporal's included) to one handler on the root."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(build_handler(settings.log_format))
    root.setLevel(settings.log_level.upper())
    if settings.log_format == "json":
        # The execution's info becomes fields of the line instead of a dict in its message.
        activity.logger.activity_info_on_message = False
        workflow.logger.workflow_info_on_message = False
