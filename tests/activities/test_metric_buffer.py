"""The watcher's buffer of metric points between two writes stays within the history's bounds."""

from __future__ import annotations

from datetime import UTC, datetime

from activities.metric_buffer import MetricBuffer

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def test_a_burst_of_reports_stays_bounded_with_first_and_last() -> None:
    buffer = MetricBuffer(max_names=3, max_points=100)
    for step in range(10_000):
        buffer.add(step, T0, {"loss": 1.0 / (step + 1), "acc": step % 7})
    buffer.add(42, T0, {"loss": 99.0})  # a step reported again replaces its value
    taken, ignored = buffer.take()
    assert ignored == 0
    loss = taken["loss"]
    assert len(loss) <= 100
    assert loss[0].step == 0 and loss[-1].step == 9_999
    assert [p.step for p in loss] == sorted(p.step for p in loss)
    assert not buffer
    assert buffer.take() == ({}, 0)


def test_names_beyond_the_cap_are_counted() -> None:
    buffer = MetricBuffer(max_names=2, max_points=100)
    buffer.add(1, T0, {"a": 1.0, "b": 2.0, "c": 3.0})
    buffer.add(2, T0, {"a": 1.0, "d": 4.0})
    taken, ignored = buffer.take()
    assert sorted(taken) == ["a", "b"]
    assert [p.step for p in taken["a"]] == [1, 2]
    assert ignored == 2
