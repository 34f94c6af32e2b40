"""Tracking and counting as one stage of a pipeline: detections in, detections with track IDs out,
plus a snapshot of trails and counts for drawing.

One ``Analytics`` per stream. The worker calls ``process`` for every detected frame, in order, right
after ``detect``; the window may switch tracking and trails and replace the lines and zones at any
time, from any thread (a lock guards the state, held for the ~1 ms of a ``process`` call).

A track the tracker still holds but the detector missed in this frame stays in the counters at its
last seen box, so a line keeps its memory of the track's side and counts a crossing made while the
detector missed it once the track is seen on the other side.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.analytics.count import LineCounter, LineState, Shape, ZoneCounter, ZoneState
from app.analytics.track import Tracker, Trails
from app.io import Closing
from app.io.durable import Every, write_atomic
from detector.detections import Detections


@dataclass(frozen=True)
class Overlay:
    """What to draw besides the boxes for one frame (immutable, safe to hand to any thread).

    Attributes:
        trails: {track id: float32 [K, 2] centres in frame pixels, oldest first}; None: trails off.
        lines: every counting line with its counts so far.
        zones: every zone with its counts so far.
    """

    trails: dict[int, np.ndarray] | None = None
    lines: tuple[LineState, ...] = ()
    zones: tuple[ZoneState, ...] = ()

    def texts(self) -> list[str]:
        """One line per counter: "line 1: in 3, out 1", "zone 1: inside 2, entries 5"."""
        return [s.text() for s in (*self.lines, *self.zones)]


class Analytics:
    """The tracker, the trails and the counters of one stream.

    Args:
        track: track objects even without lines or zones (lines and zones always track).
        trails: draw each track's recent path.
        lines, zones: the counters, as given (fractions or pixels; fixed at ``bind``).
        frame_rate: the source's nominal rate (the tracker's time unit); None = unknown.
    """

    def __init__(self, *, track: bool = False, trails: bool = True, lines: Sequence[Shape] = (),
                 zones: Sequence[Shape] = (), frame_rate: float | None = None) -> None:
        self._lock = threading.Lock()
        self._track = bool(track)
        self._trails_on = bool(trails)
        self._shapes = (tuple(lines), tuple(zones))
        self.frame_rate = frame_rate
        self.size: tuple[int, int] | None = None
        self.tracker: Tracker | None = None
        self.trails = Trails()
        self.lines: list[LineCounter] = []
        self.zones: list[ZoneCounter] = []
        self._class_names: tuple[str, ...] = ()
        self._last_seen: dict[int, tuple[np.ndarray, int]] = {}  # track id → (box [4], class id)
        self._ids_seen: set[int] = set()
        self._frames = 0
        self.last_ms: float | None = None

    @classmethod
    def from_config(cls, config, frame_rate: float | None = None) -> Analytics:
        """From a ``PipelineConfig`` (its ``track``, ``trails``, ``lines`` and ``zones``)."""
        return cls(track=config.track, trails=config.trails,
                   lines=[Shape("line", c) for c in config.lines], zones=[Shape("zone", c) for c in config.zones],
                   frame_rate=frame_rate)

    # ------------------------------------------------------------------ settings (any thread)
    @property
    def tracking(self) -> bool:
        """Whether tracking runs: asked for, or needed by a line or zone."""
        return self._track or bool(self._shapes[0] or self._shapes[1])

    def set_tracking(self, on: bool) -> None:
        with self._lock:
            self._track = bool(on)
            if not self.tracking:
                self._drop_tracker()

    def set_trails(self, on: bool) -> None:
        with self._lock:
            self._trails_on = bool(on)
            if not on:
                self.trails.clear()

    def set_shapes(self, lines: Sequence[Shape], zones: Sequence[Shape]) -> None:
        """Replace the lines and zones. A counter whose shape is unchanged keeps its counts; new
        ones start at 0. Raises ``UserError`` (and changes nothing) when a shape lies outside the
        frame already known."""
        with self._lock:
            new_shapes = (tuple(lines), tuple(zones))
            if self.size is not None:
                self.lines, self.zones = self._build(new_shapes, self.size, keep=True)
            self._shapes = new_shapes
            if not self.tracking:
                self._drop_tracker()

    def bind(self, size: tuple[int, int]) -> None:
        """Fix the lines and zones in pixels of a (width, height) frame, once — the first frame's
        size; later calls change nothing. ``UserError`` when one lies outside the frame."""
        with self._lock:
            if self.size is not None:
                return
            self.lines, self.zones = self._build(self._shapes, size, keep=False)
            self.size = (int(size[0]), int(size[1]))

    def _build(self, shapes, size, keep: bool) -> tuple[list[LineCounter], list[ZoneCounter]]:
        built = []
        for kind, given, old, make in (("line", shapes[0], self.lines, LineCounter),
                                       ("zone", shapes[1], self.zones, ZoneCounter)):
            kept = {c.shape: c for c in old} if keep else {}
            counters = [kept.get(s) or make(f"{kind} {i + 1}", s, s.to_pixels(*size)) for i, s in enumerate(given)]
            for i, c in enumerate(counters):
                c.name = f"{kind} {i + 1}"  # a kept counter takes its new place's name
            built.append(counters)
        return built[0], built[1]

    def _drop_tracker(self) -> None:
        self.tracker = None
        self.trails.clear()
        self._last_seen.clear()

    # ------------------------------------------------------------------ per frame (the worker)
    def process(self, detections: Detections, frame: int, timestamp_s: float,
                size: tuple[int, int] | None = None) -> tuple[Detections, Overlay | None]:
        """Track ``detections`` of one frame and update the counters.

        Args:
            detections: the detector's boxes [N, 4] in frame pixels.
            frame: the frame's index in the source; timestamp_s: its time in seconds.
            size: the frame's (width, height); binds the shapes on the first call.

        Returns:
            (``detections`` with ``track_ids`` when tracking — same rows, same order — and the
            overlay to draw), or (``detections`` unchanged, None) when tracking is off.
        """
        if size is not None and self.size is None:
            self.bind(size)
        with self._lock:
            if not self.tracking:
                self.last_ms = None
                return detections, None
            if self.tracker is None:
                self.tracker = Tracker(self.frame_rate)
            self._class_names = detections.class_names
            tracked = self.tracker.update(detections, timestamp_s)
            alive = self.tracker.alive_ids()
            self._frames += 1
            self._ids_seen.update(int(t) for t in tracked.track_ids if t >= 0)
            if self.lines or self.zones:
                self._count(tracked, frame, timestamp_s, alive)
            if self._trails_on:
                self.trails.add(tracked, timestamp_s, alive)
            self.last_ms = self.tracker.last_ms
            return tracked, self._overlay()

    def _count(self, tracked: Detections, frame: int, t: float, alive: set[int]) -> None:
        import supervision as sv

        for box, cid, tid in zip(tracked.boxes, tracked.class_ids, tracked.track_ids, strict=True):
            if tid >= 0:
                self._last_seen[int(tid)] = (box.copy(), int(cid))
        for tid in [k for k in self._last_seen if k not in alive]:
            del self._last_seen[tid]
        ids = np.array(list(self._last_seen), np.int64)
        boxes = np.array([b for b, _ in self._last_seen.values()], np.float32).reshape(-1, 4)
        classes = np.array([c for _, c in self._last_seen.values()], np.int64)
        current = sv.Detections(xyxy=boxes, class_id=classes, tracker_id=ids)
        for line in self.lines:
            line.update(current, self._class_names, frame, t)
        for zone in self.zones:
            zone.update(current, self._class_names, frame, t, alive)

    def _overlay(self) -> Overlay:
        return Overlay(trails=self.trails.snapshot() if self._trails_on else None,
                       lines=tuple(c.state(self._class_names) for c in self.lines),
                       zones=tuple(c.state() for c in self.zones))

    # ------------------------------------------------------------------ reports
    def summary_lines(self) -> list[str]:
        """Lines for the end of a run: the tracker's totals, then each counter by class."""
        with self._lock:
            if not self.tracking and not self._frames:
                return []
            out = [f"tracking: {len(self._ids_seen)} distinct track IDs over {self._frames} detected frames"]
            for c in self.lines:
                s = c.state(self._class_names)
                out.append(f"{c.name} ({c.shape.option}): in {s.in_total}{_classes(s.crossed_in)}, "
                           f"out {s.out_total}{_classes(s.crossed_out)}")
            for z in self.zones:
                s = z.state()
                out.append(f"{z.name} ({z.shape.option}): inside now {s.inside_total}{_classes(s.inside)}, "
                           f"entries {s.entries_total}{_classes(s.entries)}")
            return out

    def report(self) -> dict:
        """The counts file's content: per line and zone, totals by class and every event with its time."""
        with self._lock:
            lines = []
            for c in self.lines:
                s = c.state(self._class_names)
                lines.append({"name": c.name, "given": list(c.shape.coords), "points_px": _round(c.points),
                              "in": s.crossed_in, "out": s.crossed_out, "in_total": s.in_total,
                              "out_total": s.out_total, "events": [e.as_dict() for e in c.events]})
            zones = []
            for z in self.zones:
                s = z.state()
                zones.append({"name": z.name, "given": list(z.shape.coords), "polygon_px": _round(z.polygon),
                              "inside_now": s.inside, "entries": s.entries, "inside_now_total": s.inside_total,
                              "entries_total": s.entries_total, "events": [e.as_dict() for e in z.events]})
            return {
                "frame_size": list(self.size) if self.size else None,
                "tracker": {"name": "ByteTrack (trackers)", "frames_tracked": self._frames,
                            "distinct_ids": len(self._ids_seen), "options": {}},  # Tracker's defaults
                "directions": "line 'in' = from the right of (x1,y1)→(x2,y2) to its left as seen on screen; "
                              "objects are placed at their box's bottom centre",
                "lines": lines,
                "zones": zones,
            }


def _classes(counts: dict[str, int]) -> str:
    return f" ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})" if counts else ""


def _round(points: np.ndarray) -> list[list[float]]:
    return [[round(float(x), 2), round(float(y), 2)] for x, y in np.asarray(points).reshape(-1, 2)]


def check_shapes(config, source) -> None:
    """Refuse a --line or --zone outside the frame as soon as the source tells its size (a video
    file does when opened; other sources at their first frame, before it is detected)."""
    size = (getattr(source, "width", None), getattr(source, "height", None))
    if config.counting and all(isinstance(v, int) and v > 0 for v in size):
        for kind, given in (("line", config.lines), ("zone", config.zones)):
            for coords in given:
                Shape(kind, coords).to_pixels(*size)


class CountsSink(Closing):
    """Writes the counts file atomically every second and once more when the run ends (Ctrl-C too):
    a killed run leaves a whole file at most a second behind. A failed write sets ``failed`` (one
    line), keeps the last whole file, and stops the counts file only."""

    needs_image = False

    def __init__(self, path: str | Path, analytics: Analytics, stream: str | None = None) -> None:
        self.path = Path(path)
        self.analytics = analytics
        self.stream = stream  # one stream of several: its name leads the file
        self.failed: str | None = None
        self._every = Every()

    def write(self, result, annotated) -> None:
        if self.failed is None and self._every.due():
            self._save()

    def _save(self) -> None:
        try:
            report = self.analytics.report() if self.stream is None else {"stream": self.stream, **self.analytics.report()}
            write_atomic(self.path, json.dumps(report, indent=1) + "\n")
        except OSError as exc:
            self.failed = f"counts file {self.path} could not be written: {exc.strerror or exc}"

    def _close(self) -> None:
        if self.failed is None:
            self._save()
