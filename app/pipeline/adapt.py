"""Hold a target frame rate: the adaptive controller.

Three knobs trade accuracy for speed: the input size (short side, 240–800 px: the backbone's and
the RPN's cost go with the pixel count), the RPN proposal count (50–1000: the RoI head's cost goes
with it) and — for live sources only — the frame skip (detect 1 frame in k, show the others with
the last detections). A file never loses a frame.

``observe`` is called after every detected frame with the clock passed in (tests drive it with a
simulated one). It measures the rate the worker sustains since the last move (time spent waiting
for a frame and the slowest eighth left out) and smoothed per-stage times. A cost model predicts
every other setting from them (preprocess, backbone and RPN ∝ pixels, RoI head ∝ proposals, the
rest fixed); its ratios are applied to the measured rate and scaled by the share of a predicted
change that past moves delivered (work the model does not see does not shrink with the input).

* Below ``target × (1 − tolerance)`` it moves one knob (possibly several levels) towards the most
  accurate setting predicted to reach ``target × (1 + margin)``; when none can, one knob to its
  floor, the one that costs the least accuracy first (frame skip last).
* Above ``target × (1 + tolerance)`` for ``raise_after`` frames it moves one level of one knob up,
  to the most accurate such setting predicted to hold ``target × (1 + up_margin)``. Else it holds.
* A move up that had to be undone bars every setting at least as costly for ``ban_frames``
  frames, doubling each time: no back-and-forth.

"More accurate" is ``accuracy(setting)``: the model's measured AP50 grid (``detector.profiles``,
from ``run.py bench --scales ...``) interpolated, else ``prior_accuracy``. Any frame skip ranks
below every setting that detects each frame.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

SCALES = (800, 720, 640, 576, 512, 480, 448, 416, 384, 352, 320, 288, 256, 240)
PROPOSALS = (1000, 700, 500, 300, 200, 150, 100, 75, 50)
MAX_SKIP = 4
STAGE_KEYS = ("preprocess", "backbone", "rpn", "roi_heads", "postprocess")
MAX_GAP_S = 2.0  # an interval longer than this is a pause or a stall, not a measure of speed


@dataclass(frozen=True, order=True)
class Setting:
    """One operating point: input short side (px), RPN proposals kept, detect 1 frame in ``skip``."""

    input_size: int
    proposals: int
    skip: int = 1

    def describe(self) -> str:
        return f"{self.input_size} px, {self.proposals} proposals" + (f", detect 1 in {self.skip}" if self.skip > 1 else "")


def table_accuracy(table: dict) -> Callable[[Setting], float]:
    """``accuracy(setting)`` from a measured grid ``{"scales": [...], "proposals": [...], "ap50":
    [[...] per scale]}``: bilinear in (log size, log proposals), clamped at the grid's edges."""
    scales = [math.log(v) for v in table["scales"]]
    props = [math.log(v) for v in table["proposals"]]
    # More proposals never lose a box the fewer found: a dip in the measured row is noise, so each
    # row is made non-decreasing in the proposal count (equal values then rank the cheaper first).
    values = [list(itertools.accumulate(row, max)) for row in table["ap50"]]

    def accuracy(setting: Setting) -> float:  # np.interp clamps at the edges
        by_scale = [np.interp(math.log(setting.proposals), props, row) for row in values]
        return float(np.interp(math.log(setting.input_size), scales, by_scale)) - 10.0 * (setting.skip - 1)

    return accuracy


def accuracy_for(detector) -> tuple[Callable[[Setting], float] | None, tuple[int, int] | None, str]:
    """The measured accuracy grid of ``detector``'s model (function, (min, max) input size, where
    from), or (None, None, why not) — the controller then uses ``prior_accuracy``."""
    if getattr(detector, "info", None) is None:
        return None, None, "no model identity: prior"
    from detector.profiles import profile_of

    table = profile_of(detector).get("accuracy")
    if not table:
        return None, None, "no measured accuracy grid for this model (run.py bench --scales ...): prior"
    return table_accuracy(table), (min(table["scales"]), max(table["scales"])), f"AP50 grid measured {table.get('measured_at', '')[:10]}"


def prior_accuracy(setting: Setting, base_size: int = 480) -> float:
    """A monotone score (higher = more accurate) for ranking settings when no measured table is
    given: the log of the pixel count, the log of the proposals with a weight that falls above 100
    (the sweep: 1000 → 300 → 100 proposals cost little AP, fewer pixels cost more), and a frame
    skip ranked below everything detected."""
    pixels = 2.0 * math.log(setting.input_size / base_size)
    p = setting.proposals
    proposals = 0.3 * math.log(min(p, 100) / 100) + 0.05 * math.log(max(p, 100) / 100)
    return pixels + proposals - 10.0 * (setting.skip - 1)


@dataclass(frozen=True)
class AdaptConfig:
    """Settings of the controller (the thresholds are described in the module's docstring).

    Attributes:
        target_fps: frames per second to hold; None = off (the knobs stay where the user put them).
        scales / proposals: the levels each knob may take (any order; clipped to the measured grid).
        live: the source is live, so frame skip (up to ``max_skip``) is allowed (never for files).
        source_fps: the source's rate; a live source cannot be shown faster than it arrives.
        settle: frames measured after a move before the next decision.
    """

    target_fps: float | None = None
    scales: tuple[int, ...] = SCALES
    proposals: tuple[int, ...] = PROPOSALS
    live: bool = False
    source_fps: float | None = None
    max_skip: int = MAX_SKIP
    tolerance: float = 0.04
    margin: float = 0.06
    up_margin: float = 0.15
    settle: int = 5
    raise_after: int = 15
    ban_frames: int = 40

    def __post_init__(self) -> None:
        if self.target_fps is not None and not (isinstance(self.target_fps, (int, float)) and 0 < self.target_fps <= 1000):
            raise ValueError(f"target fps {self.target_fps!r} must be a number in (0, 1000]")


@dataclass
class AdaptStatus:
    """What the controller does now, for the status line, the summary and the window."""

    target_fps: float | None
    setting: Setting | None
    measured_fps: float | None
    state: str  # "off", "measuring", "holding", "lowering", "raising", "floor", "ceiling"
    reason: str
    changes: int = 0
    history: list[tuple[int, float, Setting, str]] = field(default_factory=list)  # (frame, t, setting, reason)


class AdaptiveController:
    """Steers ``detector``'s input size and proposal count (and the frame skip of a live source)
    to hold ``config.target_fps``. Thread-safe: the worker calls ``observe`` and ``detect_next``,
    any thread may call ``set_target`` and ``status``.

    Args:
        detector: has ``set_input_size``, ``set_proposal_count``, ``input_size``, ``proposal_count``.
        accuracy: ``fn(setting) -> score`` ranking settings (default: ``prior_accuracy``).
    """

    def __init__(self, detector, config: AdaptConfig | None = None,
                 accuracy: Callable[[Setting], float] | None = None) -> None:
        self.detector = detector
        self.config = config or AdaptConfig()
        base = int(getattr(detector, "base_input_size", getattr(detector, "input_size", 480)))
        measured, size_range = (accuracy, None) if accuracy else accuracy_for(detector)[:2]
        self.accuracy = measured or (lambda s: prior_accuracy(s, base))
        if size_range is not None:  # not beyond the sizes measured (their ends if no level is inside)
            inside = tuple(s for s in self.config.scales if size_range[0] <= s <= size_range[1])
            self.config = replace(self.config, scales=inside or tuple(size_range))
        self._lock = threading.Lock()
        self._user = self._setting = self._current_detector_setting()
        self._skip_counter = 0
        self._frames = 0
        self._reset_measure()
        self._stage: dict[str, float] = {}
        self._overhead_ms: float | None = None
        # The share of a predicted change that moves deliver, learnt from each move (0.3–1.2); below
        # 1 at first: on 2 shared cores the first moves delivered 50–80 % of the pixel model's gain.
        self._gain = 0.75
        self._moves_learnt = 0
        self._pending: tuple[float, float] | None = None  # (rate before the last move, its model ratio)
        self._last_t: float | None = None
        # After a move up that had to be undone: (the setting that fell short, banned until frame).
        self._ceiling: tuple[Setting, int] | None = None
        self._ban_length = self.config.ban_frames
        self._last_up: tuple[int, Setting, Setting] | None = None  # (frame, from, to)
        off = self.config.target_fps is None
        self._state, self._reason = ("off", "off") if off else ("measuring", "measuring the first frames")
        self._history: list[tuple[int, float, Setting, str]] = []  # (frame, t, setting, why): every move

    # ------------------------------------------------------------------ public
    def set_target(self, fps: float | None) -> None:
        """A new target (None = off: the knobs go back to the user's setting)."""
        with self._lock:
            was = self.config.target_fps
            self.config = replace(self.config, target_fps=fps)
            self._ceiling = None
            self._ban_length = self.config.ban_frames
            self._reset_measure()
            if fps is None:
                self._apply(self._user, "off: back to the user's setting", record=was is not None)
                self._state, self._reason = "off", "off"
            else:
                if was is None:
                    self._user = self._current_detector_setting()
                self._state, self._reason = "measuring", f"new target {fps:g} fps: measuring"

    def detect_next(self) -> bool:
        """For a live source: whether the next frame is detected (False = show the last detections)."""
        with self._lock:
            skip = self._setting.skip if self.config.live and self.config.target_fps else 1
            self._skip_counter = (self._skip_counter + 1) % skip
            return self._skip_counter == 0

    def observe(self, now: float, stage_ms: dict[str, float], shown: int = 1, detected: int = 1,
                idle_s: float = 0.0) -> None:
        """Results left the worker at ``now`` (seconds, monotonic): ``shown`` frames since the last
        call, ``detected`` of them detected (a batch, or one after skipped live frames), each with
        these stage times (ms per detected frame: preprocess, backbone, rpn, roi_heads, postprocess).

        ``idle_s``: how long of the time since the last call the worker waited for a frame (a
        source paced at its own rate, a camera slower than the detector). It is not counted: the
        controller steers on what the pipeline can sustain, not on how fast frames arrive."""
        shown, detected = max(1, shown), max(0, detected)
        with self._lock:
            self._frames += shown
            if self._last_t is not None:
                gap_ms = (now - self._last_t - max(0.0, idle_s)) * 1e3
                if 0 < gap_ms <= MAX_GAP_S * 1e3:
                    self._intervals.append(gap_ms / 1e3 / shown)
                    detect = detected * sum(stage_ms.get(k, 0.0) for k in STAGE_KEYS)
                    overhead = max(0.0, (gap_ms - detect) / shown)  # per shown frame, outside detect
                    self._overhead_ms = _ewma(self._overhead_ms, overhead, 0.3)
            self._last_t = now
            for k, v in stage_ms.items():
                self._stage[k] = _ewma(self._stage.get(k), v, 0.5)
            self._since_change += 1
            settle = self.config.settle if self._history else min(3, self.config.settle)  # the first sooner
            if self.config.target_fps is not None and self._since_change >= settle and self._intervals:
                self._decide(now)

    def status(self) -> AdaptStatus:
        with self._lock:
            return AdaptStatus(self.config.target_fps, self._setting, self._measured_fps(), self._state, self._reason,
                               len(self._history), list(self._history))

    # ------------------------------------------------------------------ the decision
    def predict_fps(self, setting: Setting) -> float | None:
        """The rate ``setting`` would reach (None before any measurement): the cost model's ratio
        between ``setting`` and the current one, times the rate measured now. (The model alone is
        off on a shared machine — other processes stretch every stage — but its ratios hold.)"""
        model = self._model_fps(setting)
        here, measured = self._model_fps(self._setting), self._measured_fps()
        if model is None or not here or not measured:
            return model
        fps = measured * (1.0 + self._gain * (model / here - 1.0))
        if self.config.live and self.config.source_fps:
            fps = min(fps, self.config.source_fps)
        return fps

    def _model_fps(self, setting: Setting) -> float | None:
        """The cost model: preprocess, backbone and RPN ∝ pixels, RoI head ∝ proposals, the rest fixed."""
        if not self._stage:
            return None
        cur = self._setting
        pixels = (setting.input_size / cur.input_size) ** 2
        roi = self._stage.get("roi_heads", 0.0) * setting.proposals / max(1, cur.proposals)
        scaled = sum(self._stage.get(k, 0.0) for k in ("preprocess", "backbone", "rpn")) * pixels
        detect_ms = scaled + roi + self._stage.get("postprocess", 0.0)
        # k frames shown per detect: one detect, and the per-frame work outside it k times
        return 1000.0 * setting.skip / max(1e-3, detect_ms + setting.skip * (self._overhead_ms or 0.0))

    def _levels(self) -> tuple[list[int], list[int], list[int]]:
        """The input sizes and proposal counts to choose from: the configured levels, the user's
        setting, and — for a model whose own size is below the smallest level — steps down from it;
        and the frame skips (live sources only)."""
        base = self._user.input_size
        scales = set(self.config.scales) | {base, self._setting.input_size}
        if base < min(self.config.scales):
            scales |= {max(32, round(base * f / 8) * 8) for f in (0.875, 0.75, 0.625, 0.5)}
        proposals = set(self.config.proposals) | {self._user.proposals, self._setting.proposals}
        skips = list(range(1, self.config.max_skip + 1)) if self.config.live else [1]
        return sorted(scales), sorted(proposals), skips

    def _decide(self, now: float) -> None:
        target = self.config.target_fps
        fps = self._measured_fps()  # not None: called with an interval measured
        cur = self._setting
        if self._pending is not None:  # learn from the last move: delivered / predicted change
            before, model_ratio = self._pending
            self._pending = None
            ratio = (fps / before - 1.0) / (model_ratio - 1.0)
            weight = 0.5 if self._moves_learnt < 2 else 0.3  # the first moves teach the most
            self._gain = (1 - weight) * self._gain + weight * min(1.2, max(0.3, ratio))
            self._moves_learnt += 1
        frame = self._frames
        grid = list(itertools.starmap(Setting, itertools.product(*self._levels())))
        if fps < target * (1 - self.config.tolerance):
            if self._last_up and self._last_up[2] == cur and frame - self._last_up[0] <= 3 * self.config.ban_frames:
                self._ceiling = (cur, frame + self._ban_length)
                self._ban_length *= 2
            aim = target * (1 + self.config.margin)
            # a frame skip only with the other knobs at their floor (skipping comes last)
            ok = [s for s in grid if (self.predict_fps(s) or 0) >= aim and (s.skip == 1 or self._at_floor(s))]
            # towards the most accurate setting predicted to reach the aim; the faster knob first
            step = self._one_knob(cur, max(ok, key=self.accuracy)) if ok else None
            if step is None:  # out of reach: one knob to its cheapest level, the least loss of accuracy first
                floors = [s for s in self._floors(cur) if (self.predict_fps(s) or 0) > (self.predict_fps(cur) or 0)]
                if not floors:
                    self._state, self._reason = "floor", f"{fps:.1f} fps < {target:g}: already the cheapest setting"
                    return
                step = max(floors, key=self.accuracy)
            self._apply(step, f"{fps:.1f} fps < {target * (1 - self.config.tolerance):.1f}: lower "
                              f"{_knob_change(cur, step)} (predicted {self.predict_fps(step):.1f} fps)", now=now)
            self._state = "lowering"
            self._last_up = None
            return
        aim = target * (1 + self.config.up_margin)
        steady = self._measured_fps(window=self.config.raise_after) if self._since_change >= self.config.raise_after else None
        better = [s for s in self._neighbours(cur) if self.accuracy(s) > self.accuracy(cur)]
        if steady is not None and steady >= target * (1 + self.config.tolerance):
            ups = [s for s in better if (self.predict_fps(s) or 0) >= aim and self._allowed(s)]
            if ups:
                step = max(ups, key=self.accuracy)
                self._apply(step, f"{steady:.1f} fps, headroom: raise {_knob_change(cur, step)} "
                                  f"(predicted {self.predict_fps(step):.1f} fps)", now=now)
                self._state = "raising"
                self._last_up = (frame, cur, step)
                return
        if not better:
            self._state, self._reason = "ceiling", f"{fps:.1f} fps ≥ {target:g}: the most accurate setting"
            return
        up = max(better, key=lambda s: (self.predict_fps(s) or 0))  # the cheapest step up
        predicted = self.predict_fps(up) or 0
        if not self._allowed(up):
            why = f"capped until frame {self._ceiling[1]}: a move up fell short"
        elif predicted < aim:
            why = f"predicted {predicted:.1f} < {aim:.1f}"
        elif steady is None:
            why = f"measuring {self.config.raise_after} frames before a move up"
        else:
            why = f"steady {steady:.1f} fps < {target * (1 + self.config.tolerance):.1f}"
        self._state = "holding"
        self._reason = f"{fps:.1f} fps ≥ {target * (1 - self.config.tolerance):.1f}; next better {up.describe()}: {why}"

    def _allowed(self, setting: Setting) -> bool:
        """False while ``setting`` costs at least as much as a move up that recently fell short."""
        if self._ceiling is None or self._frames > self._ceiling[1]:
            return True
        here, failed = self._model_fps(setting), self._model_fps(self._ceiling[0])
        return here is not None and failed is not None and here > 1.02 * failed

    def _floors(self, cur: Setting) -> list[Setting]:
        """``cur`` with one knob at its cheapest level (smallest size, fewest proposals, most skip)."""
        scales, proposals, _ = self._levels()
        out = [replace(cur, input_size=scales[0]), replace(cur, proposals=proposals[0])]
        if self.config.live and self._at_floor(cur):
            out.append(replace(cur, skip=self.config.max_skip))
        return [s for s in out if s != cur]

    def _at_floor(self, setting: Setting) -> bool:
        """Input size and proposals at their cheapest: only then may a live source skip frames."""
        scales, proposals, _ = self._levels()
        return setting.input_size == scales[0] and setting.proposals == proposals[0]

    def _neighbours(self, cur: Setting) -> list[Setting]:
        """The settings one level away on one knob."""
        out = []
        for knob, levels in zip(("input_size", "proposals", "skip"), self._levels(), strict=True):
            ordered = sorted(set(levels) | {getattr(cur, knob)})
            i = ordered.index(getattr(cur, knob))
            out += [replace(cur, **{knob: ordered[j]}) for j in (i - 1, i + 1) if 0 <= j < len(ordered)]
        return out

    def _one_knob(self, cur: Setting, goal: Setting) -> Setting | None:
        """A move down towards ``goal`` that changes one knob: the one predicted to gain most (None
        when no such move is predicted faster than ``cur``)."""
        options = [replace(cur, **{knob: getattr(goal, knob)}) for knob in ("input_size", "proposals", "skip")
                   if getattr(goal, knob) != getattr(cur, knob)
                   and (knob != "skip" or goal.skip < cur.skip or self._at_floor(cur))]
        faster = [s for s in options if (self.predict_fps(s) or 0) > (self.predict_fps(cur) or 0)]
        # the knob that gains the most speed first; the next decision takes the other
        return max(faster, key=lambda s: (self.predict_fps(s) or 0, self.accuracy(s)), default=None)

    # ------------------------------------------------------------------ helpers
    def _current_detector_setting(self) -> Setting:
        return Setting(int(getattr(self.detector, "input_size", 480)), int(getattr(self.detector, "proposal_count", 300)), 1)

    def _apply(self, setting: Setting, reason: str, now: float = 0.0, record: bool = True) -> None:
        cur = self._setting
        measured, predicted = self._measured_fps(), self.predict_fps(setting)
        self._pending = None
        if measured and predicted and abs(predicted / measured - 1.0) > 0.05:
            # the model's own ratio for this move (``_gain`` is always > 0), to compare with what it delivers
            self._pending = (measured, 1.0 + (predicted / measured - 1.0) / self._gain)
        if setting.input_size != cur.input_size:
            self.detector.set_input_size(setting.input_size)
        if setting.proposals != cur.proposals:
            self.detector.set_proposal_count(setting.proposals)
        self._setting = setting
        self._reason = reason
        self._reset_measure()
        self._stage = {}  # the stage times of the new setting are measured afresh
        if record:
            self._history.append((self._frames, now, setting, reason))

    def _reset_measure(self) -> None:
        self._intervals: list[float] = []
        self._since_change = 0

    def _measured_fps(self, window: int = 8) -> float | None:
        """Frames per second over the last ``window`` intervals since the move, the longest eighth
        left out (at least one from 5 on): one frame delayed by another process does not make a
        setting look slow, while a steady slow-down still counts in full."""
        recent = sorted(self._intervals[-window:])
        if len(recent) >= 5:
            recent = recent[: len(recent) - max(1, len(recent) // 8)]
        total = sum(recent)
        return len(recent) / total if total > 0 else None


def _ewma(old: float | None, new: float, alpha: float) -> float:
    return new if old is None else (1 - alpha) * old + alpha * new


def _knob_change(a: Setting, b: Setting) -> str:
    """The first knob that differs, "input 480 → 416 px"."""
    for knob, words in (("input_size", "input {} → {} px"), ("proposals", "proposals {} → {}"),
                        ("skip", "frame skip 1/{} → 1/{}")):
        if getattr(a, knob) != getattr(b, knob):
            return words.format(getattr(a, knob), getattr(b, knob))
    return "nothing"


def fps_series(times: Sequence[float], block: int = 10) -> list[float]:
    """Frames per second of each block of ``block`` consecutive results (from their done times)."""
    spans = (times[start + block] - times[start] for start in range(0, len(times) - block, block))
    return [block / span for span in spans if span > 0]


def oscillations(history: Sequence[tuple[int, float, Setting, str]]) -> int:
    """How many times a setting was left and then returned to within two moves (A → B → A)."""
    settings = [h[2] for h in history]
    return sum(1 for i in range(2, len(settings)) if settings[i] == settings[i - 2])


def write_log(path, stats) -> str:
    """Write the controller's record of a finished run as JSON: the target, every move (frame, seconds
    since the first result, setting, why), and the fps of every block of 10 results. ``stats``: a
    stream's ``PipelineStats`` or the run's ``MultiStats`` (the controller is the run's: with several
    streams the record also gives each stream's fps series). Returns the absolute path."""
    import json
    from pathlib import Path

    a = stats.adapt
    history = a.history if a else []
    streams = getattr(stats, "streams", None) or {"": stats}
    times = sorted(t for s in streams.values() for t in s.done_times)
    t0 = times[0] if times else 0.0
    rates = lambda times, mean_fps: {"frames": len(times), "mean_fps": mean_fps,  # noqa: E731
                                     "fps_per_10_frames": [round(v, 3) for v in fps_series(times, 10)]}
    document = {
        "target_fps": a.target_fps if a else None,
        "final": {"setting": a.setting.__dict__, "state": a.state, "reason": a.reason} if a else
                 dict.fromkeys(("setting", "state", "reason")),
        **rates(times, stats.mean_fps),
        "moves": [{"frame": f, "t_s": round(t - t0, 4) if t else None, **s.__dict__, "why": r}
                  for f, t, s, r in history],
        "oscillations": oscillations(history),
        "done_s": [round(t - t0, 4) for t in times],
    }
    if len(streams) > 1:
        document["streams"] = {name: rates(s.done_times, s.mean_fps) for name, s in streams.items()}
    out = Path(path)
    out.write_text(json.dumps(document, indent=1) + "\n")
    return str(out.resolve())
