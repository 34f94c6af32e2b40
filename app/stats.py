"""Honest measurements: fps over a sliding window, and the pipeline's stats snapshot."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from detector.detector import STAGES


class FpsMeter:
    """Frames per second over the last ``window_s`` seconds of tick times (pyqtgraph's
    ``FrameCounter`` idea): n ticks span n − 1 intervals, so fps = (n − 1) / (t_last − t_first);
    one slow frame does not make the reading jump as 1 / last-interval would. Thread-safe.
    """

    def __init__(self, window_s: float = 2.0) -> None:
        if window_s <= 0:
            raise ValueError(f"fps window must be > 0 seconds; got {window_s}")
        self.window_s = window_s
        self._ticks: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, t: float) -> None:
        with self._lock:
            self._ticks.append(t)
            while self._ticks and t - self._ticks[0] > self.window_s:
                self._ticks.popleft()

    def fps(self, now: float | None = None) -> float | None:
        """fps over the window ending at the last tick; None before two ticks. With ``now``,
        ticks older than the window before ``now`` are forgotten (a stalled stream reads None)."""
        with self._lock:
            ticks = [t for t in self._ticks if now is None or now - t <= self.window_s]
        if len(ticks) < 2 or ticks[-1] <= ticks[0]:
            return None
        return (len(ticks) - 1) / (ticks[-1] - ticks[0])

    def reset(self) -> None:
        with self._lock:
            self._ticks.clear()


@dataclass(frozen=True)
class PipelineStats:
    """A snapshot of a running (or finished) pipeline; cheap to take, safe to hand to any thread.

    Attributes:
        frames_read: frames taken from the source.
        frames_processed: frames the detector has finished.
        frames_written: results handed to every sink (recorded, exported, shown).
        frames_dropped: stale live frames replaced by a newer one before the detector saw them.
        bad_frames: frames or packets the source could not decode.
        total_frames: frames the source expects (None when unknown).
        fps: results per second over the sliding window (None until two results).
        mean_fps: results per second since the first frame was read.
        stage_ms: recent mean ms per frame of each detector stage (and "total").
        mean_stage_ms: the same over the whole run.
        latency_ms: recent mean capture-to-result latency (frame decoded → results reach the sinks).
        mean_latency_ms: the same over the whole run.
        proposals: RPN proposals kept for the latest frame.
        elapsed_s: seconds since start.
        paused, finished: the pipeline's state.
    """

    frames_read: int = 0
    frames_processed: int = 0
    frames_written: int = 0
    frames_dropped: int = 0
    bad_frames: int = 0
    total_frames: int | None = None
    fps: float | None = None
    mean_fps: float | None = None
    stage_ms: dict[str, float] = field(default_factory=dict)
    mean_stage_ms: dict[str, float] = field(default_factory=dict)
    latency_ms: float | None = None
    mean_latency_ms: float | None = None
    proposals: int = 0
    elapsed_s: float = 0.0
    paused: bool = False
    finished: bool = False

    def summary(self) -> str:
        """Lines for the end of a headless run."""
        fps = f"{self.mean_fps:.2f}" if self.mean_fps else "--"
        stages = ", ".join(f"{k} {v:.1f}" for k, v in self.mean_stage_ms.items()) or "--"
        latency = f"{self.mean_latency_ms:.0f} ms" if self.mean_latency_ms is not None else "--"
        return (
            f"frames: {self.frames_read} read, {self.frames_processed} processed, {self.frames_written} written, "
            f"{self.frames_dropped} dropped, {self.bad_frames} bad\n"
            f"speed: {fps} fps mean over {self.elapsed_s:.1f} s; capture-to-result latency {latency}\n"
            f"detector ms per frame: {stages}"
        )


class StageAverages:
    """Running and recent means of the stage times per frame (thread-safe)."""

    def __init__(self, recent: int = 30) -> None:
        self._lock = threading.Lock()
        self._recent: deque[dict[str, float]] = deque(maxlen=recent)
        self._sums = dict.fromkeys((*STAGES, "total"), 0.0)
        self._n = 0

    def add(self, stage_ms: dict[str, float]) -> None:
        with self._lock:
            self._recent.append(stage_ms)
            for k in self._sums:
                self._sums[k] += stage_ms.get(k, 0.0)
            self._n += 1

    def recent(self) -> dict[str, float]:
        with self._lock:
            rows = list(self._recent)
        if not rows:
            return {}
        return {k: sum(r.get(k, 0.0) for r in rows) / len(rows) for k in self._sums}

    def mean(self) -> dict[str, float]:
        with self._lock:
            return {k: v / self._n for k, v in self._sums.items()} if self._n else {}
