"""The status area's figures — pure logic, no Qt: the 30/60 fps targets and a rolling mean.

The display rate itself is measured by ``app.stats.FpsMeter`` (the same meter as the pipeline's
stats), over a sliding window of display timestamps; a stream that stops reads no rate once its last
frames have left the window instead of freezing on the last value.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum

TARGETS: tuple[float, ...] = (30.0, 60.0)

# A rate within 2 % of a target meets it: a 29.97 fps source displayed at its own rate meets 30.
MET_TOLERANCE = 0.02
# Within 80 % of a target the target is "near" (amber), below that it is missed (red).
NEAR_FRACTION = 0.8


class Level(Enum):
    MET = "met"
    NEAR = "near"
    MISSED = "missed"


@dataclass(frozen=True)
class TargetStatus:
    """Whether a measured rate meets one fps target."""

    target: float
    fps: float
    level: Level

    @property
    def met(self) -> bool:
        return self.level is Level.MET

    @property
    def text(self) -> str:
        mark = {Level.MET: "✓", Level.NEAR: "~", Level.MISSED: "✗"}[self.level]
        return f"{self.target:g} fps {mark}"


def target_status(fps: float, target: float) -> TargetStatus:
    """Classify ``fps`` against ``target`` (met within ``MET_TOLERANCE``, near from ``NEAR_FRACTION``)."""
    if not target > 0:
        raise ValueError(f"an fps target must be > 0; got {target!r}")
    if not math.isfinite(fps) or fps < 0:
        raise ValueError(f"a measured fps must be a finite number ≥ 0; got {fps!r}")
    if fps >= target * (1.0 - MET_TOLERANCE):
        level = Level.MET
    elif fps >= target * NEAR_FRACTION:
        level = Level.NEAR
    else:
        level = Level.MISSED
    return TargetStatus(float(target), float(fps), level)


class RollingMean:
    """The mean of the last ``size`` values (latency, dropped-per-second...); 0 when empty."""

    def __init__(self, size: int = 30) -> None:
        if size < 1:
            raise ValueError(f"size must be ≥ 1; got {size!r}")
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(float(value))

    def reset(self) -> None:
        self._values.clear()

    @property
    def mean(self) -> float:
        return sum(self._values) / len(self._values) if self._values else 0.0

    def __len__(self) -> int:
        return len(self._values)
