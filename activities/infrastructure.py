"""Infrastructure failures of one training attempt, counted by the orchestrator and bounded.

The attempt activity's Temporal retry policy has no limit, so a lost worker (a heartbeat
timeout, a deploy, a crash) costs nothing however often it happens during one attempt. What
is counted is what the activity itself runs into: the engine unreachable, an image that
cannot be pulled, a container start the engine refused for reasons of its own. The record
rides in the heartbeat details (the SDK sends the last details with the failure, and
Temporal hands them to the next try); a try that follows its container through one healthy
poll of the engine clears it, so failures count as "in a row" only while nothing works.

* At ``INFRA_MAX_ATTEMPTS`` failures in a row the attempt is given up: a non-retryable
  error fails the run, without consuming ``max_retries``.
* An engine that cannot be reached once the attempt's container has started is an outage
  (a restarting engine, a rebooting host), not yet a failure: the tries wait for it, uncounted,
  for ``ENGINE_OUTAGE_SECONDS`` from the first one that found it away.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from runtimes.base import ImageUnavailableError, RuntimeUnavailableError
from workflows.models import (
    ENGINE_UNREACHABLE,
    IMAGE_UNAVAILABLE,
    INFRASTRUCTURE_FAILURE,
    RUNTIME_UNAVAILABLE,
)

FAILURES_KEY = "infra_failures"
OUTAGE_KEY = "engine_unreachable_since"


@dataclass(frozen=True)
class InfraRecord:
    """Failures in a row so far, and since when the engine has been away (if it is)."""

    failures: int = 0
    engine_away_since: datetime | None = None

    def details(self) -> dict[str, Any]:
        """The heartbeat details that carry this record to the next try."""
        since = self.engine_away_since
        return {FAILURES_KEY: self.failures, OUTAGE_KEY: since.isoformat() if since else None}


def recorded() -> InfraRecord:
    """The record of the tries before this one, from the last heartbeat's details."""
    for detail in activity.info().heartbeat_details:
        if isinstance(detail, dict) and isinstance(detail.get(FAILURES_KEY), int):
            return record_in(detail)
    return InfraRecord()


def record_in(details: dict[str, Any]) -> InfraRecord:
    """The record that heartbeat ``details`` carry (none: a clean record)."""
    failures = details.get(FAILURES_KEY)
    since = details.get(OUTAGE_KEY)
    try:
        away = datetime.fromisoformat(since) if isinstance(since, str) else None
    except ValueError:
        away = None
    return InfraRecord(max(0, failures) if isinstance(failures, int) else 0, away)


def failure_type(err: BaseException, *, final: bool) -> str:
    """The error type: ``RuntimeUnavailable`` only when giving up, as older workflows (whose
    retry policy does not retry it) would otherwise fail at an engine's first hiccup."""
    if isinstance(err, ImageUnavailableError):
        return IMAGE_UNAVAILABLE
    if isinstance(err, RuntimeUnavailableError):
        return RUNTIME_UNAVAILABLE if final else ENGINE_UNREACHABLE
    return INFRASTRUCTURE_FAILURE


def infrastructure_failure(
    err: BaseException,
    before: InfraRecord,
    *,
    attempt_started: bool,
    now: datetime,
    limit: int,
    outage_seconds: float,
) -> tuple[ApplicationError, InfraRecord]:
    """The error this try fails with, and the record the next try starts from."""
    reason = str(err) or type(err).__name__
    if isinstance(err, RuntimeUnavailableError) and attempt_started:
        since = before.engine_away_since or now
        if (now - since).total_seconds() < outage_seconds:
            waiting = (
                f"{reason} (the engine has been away since {since.isoformat(timespec='seconds')};"
                f" waiting up to {outage_seconds:.0f} s for it, ENGINE_OUTAGE_SECONDS)"
            )
            away = InfraRecord(before.failures, since)
            return ApplicationError(waiting, type=ENGINE_UNREACHABLE), away
    after = InfraRecord(before.failures + 1, before.engine_away_since)
    if after.failures >= limit:
        final = ApplicationError(
            f"{reason}; gave up after {after.failures} infrastructure failures in a row "
            "(INFRA_MAX_ATTEMPTS)",
            type=failure_type(err, final=True),
            non_retryable=True,
        )
        return final, after
    counted = ApplicationError(
        f"{reason} (infrastructure failure {after.failures} in a row of at most {limit})",
        type=failure_type(err, final=False),
    )
    return counted, after
