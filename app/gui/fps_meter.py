"""Honest frame-rate and latency figures for the status area — pure logic, no Qt.

The fps is measured over a sliding window of display timestamps (like pyqtgraph's ``FrameCounter``),
never as 1 / last interval: ``n`` timestamps span ``n - 1`` intervals, and a stream that stops shows
0 fps once its last frames have left the window instead of freezing on the last value.
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


class FpsMeter:
    """Frames per second over the last ``window_s`` seconds of ``tick`` timestamps.

    Args:
        window_s: length of the sliding window in seconds.
        stale_s: with no frame for this long (or 1.5 × the last interval, whichever is longer) the
            rate reads 0 — a stalled or paused stream does not keep showing its old rate.
        max_samples: bound on the timestamps kept (memory stays bounded at any rate).
        targets: the fps targets reported by ``statuses``.

    Timestamps are seconds on one monotonic clock (``time.monotonic()``); they are passed in so that
    tests can drive the meter with synthetic times. A rate slower than one frame per window is still
    measured, from the last two frames.
    """

    def __init__(self, window_s: float = 1.0, stale_s: float = 2.0, max_samples: int = 1000,
                 targets: tuple[float, ...] = TARGETS) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0 seconds; got {window_s!r}")
        if not stale_s > 0:
            raise ValueError(f"stale_s must be > 0 seconds; got {stale_s!r}")
        if max_samples < 2:
            raise ValueError(f"max_samples must be ≥ 2 (a rate needs two timestamps); got {max_samples!r}")
        self.window_s = float(window_s)
        self.stale_s = float(stale_s)
        self.targets = tuple(float(t) for t in targets)
        self._times: deque[float] = deque(maxlen=int(max_samples))

    def tick(self, t: float) -> None:
        """Record one displayed frame at time ``t`` (seconds)."""
        if self._times and t < self._times[-1]:
            raise ValueError(f"timestamps must not go backwards: {t!r} after {self._times[-1]!r}")
        self._times.append(float(t))
        # Keep the window plus the one frame before it (a slow stream is measured from two frames).
        while len(self._times) > 2 and self._times[1] < t - self.window_s:
            self._times.popleft()

    def reset(self) -> None:
        self._times.clear()

    def fps(self, now: float | None = None) -> float:
        """The rate over the window ending at the last tick; 0 with < 2 frames or when stalled at ``now``."""
        times = self._times
        if len(times) < 2:
            return 0.0
        last, before = times[-1], times[-2]
        if now is not None and now - last > max(self.stale_s, 1.5 * (last - before)):
            return 0.0
        first = next((t for t in times if t >= last - self.window_s), before)
        if first == last:  # only one frame inside the window: measure from the previous one
            first = before
        n_intervals = sum(1 for t in times if t >= first) - 1
        span = last - first
        return n_intervals / span if span > 0 else 0.0

    def statuses(self, now: float | None = None) -> list[TargetStatus]:
        """The current rate against every target, lowest target first."""
        rate = self.fps(now)
        return [target_status(rate, t) for t in sorted(self.targets)]

    def __len__(self) -> int:
        return len(self._times)


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
