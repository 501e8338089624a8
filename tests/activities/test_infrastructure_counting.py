"""Which failures of the attempt activity are counted against INFRA_MAX_ATTEMPTS, and when.

The counting itself, as a function of the record the last heartbeat carried; the runs it
decides are in tests/faults (worker losses, an engine restart, a failing engine).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from activities.infrastructure import InfraRecord, infrastructure_failure, record_in
from runtimes.base import ImageUnavailableError, RuntimeUnavailableError
from workflows.models import (
    ENGINE_UNREACHABLE,
    IMAGE_UNAVAILABLE,
    INFRASTRUCTURE_FAILURE,
    RUNTIME_UNAVAILABLE,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def fail(err: Exception, before: InfraRecord, *, started: bool) -> tuple[str, bool, InfraRecord]:
    error, after = infrastructure_failure(
        err, before, attempt_started=started, now=NOW, limit=3, outage_seconds=300
    )
    return error.type or "", error.non_retryable, after


def test_failures_in_a_row_are_counted_and_the_last_gives_up() -> None:
    record = InfraRecord()
    kinds = []
    for _ in range(3):
        kind, final, record = fail(ImageUnavailableError("pull failed"), record, started=False)
        kinds.append((kind, final, record.failures))
    assert kinds == [
        (IMAGE_UNAVAILABLE, False, 1),
        (IMAGE_UNAVAILABLE, False, 2),
        (IMAGE_UNAVAILABLE, True, 3),
    ]


def test_an_engine_away_under_a_running_attempt_is_waited_for_then_counted() -> None:
    away = RuntimeUnavailableError("connection refused")
    kind, final, record = fail(away, InfraRecord(), started=True)
    assert (kind, final, record) == (ENGINE_UNREACHABLE, False, InfraRecord(0, NOW))
    # Still within ENGINE_OUTAGE_SECONDS of the first try that found it away: not counted.
    kind, final, record = fail(away, InfraRecord(0, NOW - timedelta(seconds=299)), started=True)
    assert (kind, record.failures) == (ENGINE_UNREACHABLE, 0)
    kind, final, record = fail(away, InfraRecord(2, NOW - timedelta(seconds=301)), started=True)
    assert (kind, final, record.failures) == (RUNTIME_UNAVAILABLE, True, 3)


def test_no_engine_before_the_attempt_started_counts_at_once() -> None:
    kind, final, record = fail(RuntimeUnavailableError("no engine"), InfraRecord(), started=False)
    assert (kind, final, record.failures) == (ENGINE_UNREACHABLE, False, 1)
    kind, _, _ = fail(OSError("disk full"), record, started=True)
    assert kind == INFRASTRUCTURE_FAILURE


def test_the_record_survives_the_heartbeat_round_trip() -> None:
    record = InfraRecord(2, NOW)
    assert record_in(record.details()) == record
    assert record_in({"progress": None}) == InfraRecord()
