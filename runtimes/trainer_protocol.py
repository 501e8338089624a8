"""The trainer's side of the contract: marked lines on stdout, parsed leniently.

``PROGRESS {"step": 10, "total": 100, "epoch": 1, "metrics": {"loss": 0.3}}`` reports
progress; ``CHECKPOINT {"path": "ckpt-10.pt", "step": 10}`` announces a finished checkpoint
(path relative to CHECKPOINT_DIR). A malformed line is ignored, never fatal.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

PROGRESS_MARK = "PROGRESS "
CHECKPOINT_MARK = "CHECKPOINT "


@dataclass(frozen=True)
class ProgressReport:
    step: int | None = None
    total: int | None = None
    epoch: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "total": self.total,
            "epoch": self.epoch,
            "metrics": self.metrics,
        }


@dataclass(frozen=True)
class CheckpointAnnouncement:
    path: str
    step: int | None


def _payload(line: str, mark: str) -> dict[str, Any] | None:
    text = line.strip()
    if not text.startswith(mark):
        return None
    try:
        data = json.loads(text[len(mark) :])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _whole(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value) if value >= 0 else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def parse_progress(line: str) -> ProgressReport | None:
    """A ProgressReport from a ``PROGRESS {json}`` line; None for anything else."""
    data = _payload(line, PROGRESS_MARK)
    if data is None:
        return None
    raw_metrics = data.get("metrics")
    metrics = {}
    if isinstance(raw_metrics, dict):
        for key, value in raw_metrics.items():
            number = _number(value)
            if isinstance(key, str) and number is not None:
                metrics[key[:100]] = number
    report = ProgressReport(
        step=_whole(data.get("step")),
        total=_whole(data.get("total")),
        epoch=_number(data.get("epoch")),
        metrics=dict(list(metrics.items())[:50]),
    )
    if report == ProgressReport():
        return None
    return report


def parse_checkpoint(line: str) -> CheckpointAnnouncement | None:
    """A CheckpointAnnouncement from a ``CHECKPOINT {json}`` line; None for anything else."""
    data = _payload(line, CHECKPOINT_MARK)
    if data is None or not isinstance(data.get("path"), str) or not data["path"].strip():
        return None
    return CheckpointAnnouncement(path=data["path"].strip(), step=_whole(data.get("step")))
