"""The metric values read since the last write to SQL, bounded in memory.

A trainer may print thousands of PROGRESS lines a second while the watcher writes once a
second, so the points wait here in between. The buffer keeps the same bounds as the stored
history: at most ``MAX_METRICS_PER_RUN`` names (values of others are counted) and at most
``MAX_POINTS_PER_METRIC`` points per name, halved the same way when a name outgrows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from store.metric_history import (
    MAX_METRICS_PER_RUN,
    MAX_POINTS_PER_METRIC,
    Sample,
    downsample,
)


class MetricBuffer:
    """Points per metric name, by step (a step reported again replaces its value)."""

    def __init__(
        self, max_names: int = MAX_METRICS_PER_RUN, max_points: int = MAX_POINTS_PER_METRIC
    ) -> None:
        self._max_names = max_names
        self._max_points = max_points
        self._series: dict[str, dict[int, Sample]] = {}
        self._ignored = 0

    def add(self, step: int, at: datetime, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            series = self._series.get(name)
            if series is None:
                if len(self._series) >= self._max_names:
                    self._ignored += 1
                    continue
                series = self._series[name] = {}
            series[step] = Sample(step, at, value)
            if len(series) > self._max_points:
                ordered = sorted(series.values(), key=lambda sample: sample.step)
                kept = downsample(ordered, self._max_points // 2)
                self._series[name] = {sample.step: sample for sample in kept}

    def take(self) -> tuple[dict[str, list[Sample]], int]:
        """Everything buffered (each name's points ordered by step) and the values ignored;
        the buffer is empty afterwards."""
        taken = {
            name: sorted(series.values(), key=lambda sample: sample.step)
            for name, series in self._series.items()
        }
        ignored, self._series, self._ignored = self._ignored, {}, 0
        return taken, ignored

    def __bool__(self) -> bool:
        return bool(self._series) or self._ignored > 0
