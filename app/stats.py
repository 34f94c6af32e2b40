"""Honest measurements: fps over a sliding window, and the pipeline's stats snapshot."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field

from detector.stages import STAGES


class FpsMeter:
    """Frames per second over the last ``window_s`` seconds of ``tick`` timestamps: (n − 1) / (t_last −
    t_first), never 1 / last interval, so one slow frame does not make the reading jump. A rate
    slower than one frame per window is still measured, from the last two frames.

    Args:
        window_s: length of the sliding window in seconds.
        stale_s: with ``now`` given and no frame for this long (or 1.5 × the last interval, whichever
            is longer) there is no rate — a stalled or paused stream does not keep its old reading.
        max_samples: bound on the timestamps kept (memory stays bounded at any rate).

    Timestamps are seconds on one monotonic clock, passed in so that tests can use synthetic times.
    Thread-safe.
    """

    def __init__(self, window_s: float = 1.0, stale_s: float = 2.0, max_samples: int = 1000) -> None:
        if not window_s > 0:
            raise ValueError(f"fps window must be > 0 seconds; got {window_s!r}")
        if not stale_s > 0:
            raise ValueError(f"stale_s must be > 0 seconds; got {stale_s!r}")
        if max_samples < 2:
            raise ValueError(f"max_samples must be ≥ 2 (a rate needs two timestamps); got {max_samples!r}")
        self.window_s = float(window_s)
        self.stale_s = float(stale_s)
        self._times: deque[float] = deque(maxlen=int(max_samples))
        self._lock = threading.Lock()

    def tick(self, t: float) -> None:
        """Record one frame at time ``t`` (seconds)."""
        with self._lock:
            if self._times and t < self._times[-1]:
                raise ValueError(f"timestamps must not go backwards: {t!r} after {self._times[-1]!r}")
            self._times.append(float(t))
            # Keep the window plus the one frame before it (a slow stream is measured from two frames).
            while len(self._times) > 2 and self._times[1] < t - self.window_s:
                self._times.popleft()

    def reset(self) -> None:
        with self._lock:
            self._times.clear()

    def fps(self, now: float | None = None) -> float | None:
        """The rate over the window ending at the last tick; None with fewer than two frames, or
        when stalled at ``now``."""
        with self._lock:
            times = list(self._times)
        if len(times) < 2:
            return None
        last, before = times[-1], times[-2]
        if now is not None and now - last > max(self.stale_s, 1.5 * (last - before)):
            return None
        # the first frame inside the window, or the one before the last when only the last is inside
        first = min(next(t for t in times if t >= last - self.window_s), before)
        n_intervals = sum(1 for t in times if t >= first) - 1
        span = last - first
        return n_intervals / span if span > 0 else None

    def __len__(self) -> int:
        return len(self._times)


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
        adapt: the adaptive controller's status (``app.pipeline.adapt.AdaptStatus``) while it is on.
        done_times: when each result was delivered (monotonic s), in the final snapshot only.
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
    adapt: object | None = None
    done_times: tuple[float, ...] = ()


def bad_frames_warning(streams: dict[str, PipelineStats]) -> str | None:
    """One line for the frames that could not be decoded (``streams``: each stream's final stats by the
    name to show), None when every frame decoded. The same words for one stream or many."""
    parts = [f"{s.bad_frames} frame(s) of {name} could not be decoded and were skipped (the other {s.frames_read} "
             "were processed)" for name, s in streams.items() if s.bad_frames]
    return "warning: " + "; ".join(parts) if parts else None


class StageAverages:
    """Running and recent means of the stage times per frame (thread-safe).

    The detector's stages (and "total") are averaged over every frame; another stage that only
    some frames pass through (the tracker, "track", switched on mid-run) over the frames that did.
    """

    BASE = (*STAGES, "total")

    def __init__(self, recent: int = 30) -> None:
        self._lock = threading.Lock()
        self._recent: deque[dict[str, float]] = deque(maxlen=recent)
        self._sums = dict.fromkeys(self.BASE, 0.0)
        self._counts = dict.fromkeys(self.BASE, 0)

    def add(self, stage_ms: dict[str, float]) -> None:
        with self._lock:
            self._recent.append(stage_ms)
            for k in (*self.BASE, *(k for k in stage_ms if k not in self.BASE)):
                self._sums[k] = self._sums.get(k, 0.0) + stage_ms.get(k, 0.0)
                self._counts[k] = self._counts.get(k, 0) + 1

    def recent(self) -> dict[str, float]:
        with self._lock:
            rows = list(self._recent)
            keys = list(self._sums)
        # a base stage counts 0 in a row without it; another stage only the rows that have it
        values = {k: [r.get(k, 0.0) for r in rows] if k in self.BASE else [r[k] for r in rows if k in r] for k in keys}
        return {k: sum(v) / len(v) for k, v in values.items() if v}

    def mean(self) -> dict[str, float]:
        with self._lock:
            return {k: v / self._counts[k] for k, v in self._sums.items() if self._counts[k]}


@dataclass(frozen=True)
class MultiStats:
    """A snapshot of a multi-stream run.

    Attributes:
        streams: each stream's ``PipelineStats``, in the run's order.
        states: each stream's state: "running", "reconnecting (attempt k, next in s)", "ended",
            "failed: <reason>".
        fps: results per second of all streams together (sliding window).
        mean_fps: the same since the first frame.
        batches: ``detect`` calls so far; batch_sizes: how many calls had each size.
        elapsed_s, finished.
    """

    streams: dict[str, PipelineStats] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    fps: float | None = None
    mean_fps: float | None = None
    batches: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    finished: bool = False
    paused: bool = False
    adapt: object | None = None  # app.pipeline.adapt.AdaptStatus while --target-fps steers the shared detector

    @property
    def mean_batch(self) -> float | None:
        return sum(k * v for k, v in self.batch_sizes.items()) / self.batches if self.batches else None

    @property
    def frames_written(self) -> int:
        return sum(s.frames_written for s in self.streams.values())

    def summary(self) -> str:
        """Lines for the end of a headless run, one stream or many: a line per stream (led by
        ``frames:``, or by its name when there are several), the total (several), the detector's ms
        per frame over every stream, and what ``--target-fps`` chose."""
        several = len(self.streams) > 1
        lines = []
        for name, s in self.streams.items():
            fps = f"{s.mean_fps:.2f}" if s.mean_fps else "--"
            latency = f"{s.mean_latency_ms:.0f} ms" if s.mean_latency_ms is not None else "--"
            state = self.states.get(name, "running")
            lines.append(f"{name if several else 'frames'}: {s.frames_read} read, {s.frames_processed} processed, "
                         f"{s.frames_written} written, {s.frames_dropped} dropped, {s.bad_frames} bad; {fps} fps mean "
                         f"over {s.elapsed_s:.1f} s, capture-to-result latency {latency}, proposals {s.proposals}"
                         + ("" if state in ("running", "ended") else f" ({state})"))
        if several:
            total = f"{self.mean_fps:.2f}" if self.mean_fps else "--"
            sizes = ", ".join(f"{k}×{v}" for k, v in sorted(self.batch_sizes.items())) or "--"
            mean = f"{self.mean_batch:.2f}" if self.mean_batch else "--"
            lines.append(f"all {len(self.streams)} streams: {self.frames_written} frames, {total} fps together over "
                         f"{self.elapsed_s:.1f} s; {self.batches} batches, mean size {mean} (size×count: {sizes})")
        stage_ms = _weighted_stage_ms(self.streams.values())
        stages = ", ".join(f"{k} {v:.1f}" for k, v in stage_ms.items() if k != "track") or "--"
        lines.append(f"detector ms per frame: {stages}")
        if "track" in stage_ms:
            lines.append(f"tracker ms per frame: {stage_ms['track']:.2f}")
        if self.adapt is not None:
            from app.pipeline.adapt import fps_series

            a = self.adapt
            target = f"{a.target_fps:g} fps{' per stream' if several else ''}" if a.target_fps else "off"
            lines.append(f"adaptive: target {target} → {a.setting.describe()} ({a.state}: {a.reason})")
            for name, s in self.streams.items():
                series = " ".join(f"{v:.1f}" for v in fps_series(s.done_times, 10)) or "--"
                lines.append(f"  fps per 10 frames{f' of {name}' if several else ''}: {series}")
            moves = "; ".join(f"frame {f}: {s.describe()}" for f, _t, s, _r in a.history) or "none"
            lines.append(f"  {a.changes} change(s): {moves}")
        return "\n".join(lines)


def _weighted_stage_ms(streams) -> dict[str, float]:
    """Each stage's mean ms per frame over every stream, weighted by the frames each one processed."""
    sums: Counter[str] = Counter()
    weights: Counter[str] = Counter()
    for s in streams:
        for k, v in s.mean_stage_ms.items():
            sums[k] += v * max(1, s.frames_processed)
            weights[k] += max(1, s.frames_processed)
    return {k: v / weights[k] for k, v in sums.items()}
