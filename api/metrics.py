"""Prometheus metrics of the API: HTTP traffic, and job and run totals read from SQL.

Each app owns its ``CollectorRegistry`` (several apps in one process never collide). Job and
run figures are read from the database when ``/metrics`` is scraped, so every API replica and
worker agrees on them; a deleted job takes its runs with it, which Prometheus reads as a
counter reset.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.routing import Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.metrics import StoreSnapshot
from workflows.models import JobStatus

# Label for requests no route answers (404s), so random paths cannot blow up the series.
UNMATCHED_ROUTE = "<unmatched>"
RUN_OUTCOMES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class _StoreCollector(Collector):
    """Serves the snapshot the ``/metrics`` handler read just before rendering."""

    def __init__(self) -> None:
        self.snapshot = StoreSnapshot()

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        jobs = GaugeMetricFamily("orchestrator_jobs", "Jobs by status.", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status.value], snap.jobs_by_status.get(status, 0))
        yield jobs
        runs = CounterMetricFamily(
            "orchestrator_runs",
            "Runs started (status=started) and ended as completed, failed or cancelled.",
            labels=["status"],
        )
        runs.add_metric(["started"], snap.runs_started)
        for status in RUN_OUTCOMES:
            runs.add_metric([status.value], snap.runs_by_status.get(status, 0))
        yield runs
        yield CounterMetricFamily(
            "orchestrator_run_retries",
            "Training retries (non-zero exits retried), summed over runs.",
            value=snap.run_retries,
        )
        yield CounterMetricFamily(
            "orchestrator_notification_failures",
            "Notifications (run, event, channel) whose delivery failed.",
            value=snap.notification_failures,
        )


class ApiMetrics:
    """One app's registry and the metrics written to it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["method", "route", "status"]
        self.requests = Counter(
            "orchestrator_http_requests",
            "HTTP requests by route template and status code.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "orchestrator_http_request_duration_seconds",
            "Time from request to the end of the response, by route template and status.",
            labels,
            registry=self.registry,
        )
        self._store = _StoreCollector()
        self.registry.register(self._store)

    def render(self, snapshot: StoreSnapshot, accept: str | None) -> tuple[bytes, str]:
        """The body and its content type: OpenMetrics when asked for, else Prometheus text.

        Nothing awaits between storing the snapshot and reading it, so concurrent scrapes
        each render their own.
        """
        encode, content_type = choose_encoder(accept or "")
        self._store.snapshot = snapshot
        return encode(self.registry), content_type


def route_template(handled: Scope, received: Scope) -> str:
    """The matched route's path template (``/jobs/{job_id}``), never the raw path.

    ``handled`` is the scope after routing, ``received`` a copy taken before it (a mount
    rewrites the path it would have to match again).
    """
    template = getattr(handled.get("route"), "path_format", None)
    if isinstance(template, str):
        return template
    # Starlette routes of the app itself (OpenAPI schema, static mount) leave no "route".
    app = received.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", []):
        if isinstance(candidate, Route | Mount) and candidate.matches(received)[0] is Match.FULL:
            return candidate.path_format
    return UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: streaming responses are timed whole)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless the app answers before raising

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        received = dict(scope)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            labels = (scope["method"], route_template(scope, received), str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
