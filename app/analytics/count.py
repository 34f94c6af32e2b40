"""Counting tracked objects: lines crossed (in / out) and polygon zones (inside now, entries).

The geometry comes from supervision (MIT): ``sv.LineZone`` decides on which side of a line each
track is and when it changed sides, ``sv.PolygonZone`` whether a track is inside a polygon. Both
look at one point of each box, its bottom centre — where a person or a vehicle stands on the
ground, which is what a line or zone drawn on the scene means.

A change of side, or of inside/outside, counts once it has been seen in ``CONFIRM`` detected frames
in a row: a box whose bottom edge jitters on a line, as a person walking along it does, would
otherwise count a crossing back and forth on every frame.

A line is "x1,y1,x2,y2", a zone "x1,y1,x2,y2,x3,y3,…" (``Shape.parse``): fractions of the frame's
width and height when all are in [0, 1], else source pixels (``Shape.to_pixels``).

Directions: "in" is a crossing from the right of the line to its left, as seen on screen walking
from (x1, y1) to (x2, y2); so for a line drawn left to right, "in" is upwards, and for a line drawn
top to bottom, "in" is rightwards. "out" is the other way.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from app.errors import UserError

KINDS = {"line": "--line", "zone": "--zone"}
CONFIRM = 2  # detected frames in a row on the new side before a crossing (or entry, exit) counts


@dataclass(frozen=True)
class Shape:
    """A counting line (two points) or zone (a polygon of three or more points), as the user gave it.

    Attributes:
        kind: "line" or "zone".
        coords: x1, y1, x2, y2, … as given: fractions of the frame when all are in [0, 1], else pixels.
    """

    kind: str
    coords: tuple[float, ...]

    def __post_init__(self) -> None:
        option = KINDS.get(self.kind)
        if option is None:
            raise UserError(f"shape kind {self.kind!r} is unknown; expected line or zone")
        coords = tuple(self.coords)
        text = ",".join(_fmt(c) for c in coords) if all(isinstance(c, (int, float)) for c in coords) else str(coords)
        for c in coords:
            if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c):
                raise UserError(f"{option} {text}: {c!r} is not a finite number")
        if len(coords) % 2:
            raise UserError(f"{option} {text}: {len(coords)} numbers — every point needs an x and a y")
        points = len(coords) // 2
        if self.kind == "line" and points != 2:
            raise UserError(f"{option} {text}: a line takes 2 points (x1,y1,x2,y2); got {points}")
        if self.kind == "zone" and points < 3:
            raise UserError(f"{option} {text}: a zone needs at least 3 points (x1,y1,x2,y2,x3,y3,…); got {points}")
        if any(c < 0 for c in coords):
            raise UserError(f"{option} {text}: a negative coordinate lies outside the frame")
        pts = np.asarray(coords, np.float64).reshape(-1, 2)
        if self.kind == "line" and np.allclose(pts[0], pts[1]):
            raise UserError(f"{option} {text}: the two points are the same; a line needs two different points")
        if self.kind == "zone" and _polygon_area(pts) <= 1e-9:
            raise UserError(f"{option} {text}: the points enclose no area (they lie on one line)")
        object.__setattr__(self, "coords", tuple(float(c) for c in coords))

    @classmethod
    def parse(cls, kind: str, text: str) -> Shape:
        """A shape from the command line's "x1,y1,x2,y2[,…]"; ``UserError`` naming the bad part."""
        option = KINDS.get(kind, kind)
        items = [s.strip() for s in str(text).split(",")]
        if not str(text).strip() or any(not s for s in items):
            raise UserError(f"{option} {text!r}: expected comma-separated numbers such as "
                            + ("0.5,0,0.5,1" if kind == "line" else "0.1,0.1,0.5,0.1,0.5,0.9"))
        values = []
        for item in items:
            try:
                values.append(float(item))
            except ValueError:
                raise UserError(f"{option} {text}: {item!r} is not a number") from None
        return cls(kind, tuple(values))

    @property
    def fractional(self) -> bool:
        """True when the coordinates are fractions of the frame (all in [0, 1])."""
        return all(c <= 1.0 for c in self.coords)

    @property
    def option(self) -> str:
        return f"{KINDS[self.kind]} {','.join(_fmt(c) for c in self.coords)}"

    def to_pixels(self, width: int, height: int) -> np.ndarray:
        """The points in frame pixels, float64 [K, 2] (x, y); ``UserError`` when one lies outside
        the ``width`` × ``height`` frame (its border included)."""
        pts = np.asarray(self.coords, np.float64).reshape(-1, 2)
        if self.fractional:
            pts = pts * (width, height)
        for x, y in pts:
            if not (0 <= x <= width and 0 <= y <= height):
                raise UserError(f"{self.option}: point ({_fmt(x)}, {_fmt(y)}) lies outside the {width}×{height} frame "
                                f"(x 0–{width}, y 0–{height}; or give fractions 0–1)")
        return pts


def _fmt(value: float) -> str:
    return f"{value:g}"


def _polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2


# ------------------------------------------------------------------------------------ counters
@dataclass(frozen=True)
class CountEvent:
    """One crossing or entry: when, which frame, which track, its class, and what happened
    ("in" / "out" for a line, "enter" / "exit" for a zone)."""

    timestamp_s: float
    frame: int
    track_id: int
    class_name: str
    event: str

    def as_dict(self) -> dict:
        return {"timestamp_s": round(self.timestamp_s, 6), "frame": self.frame, "track_id": self.track_id,
                "class": self.class_name, "event": self.event}


@dataclass(frozen=True)
class LineState:
    """A line's counts at one moment. ``points``: float [2, 2] frame pixels; counts by class name."""

    name: str
    points: np.ndarray
    crossed_in: dict[str, int] = field(default_factory=dict)
    crossed_out: dict[str, int] = field(default_factory=dict)

    in_total = property(lambda self: sum(self.crossed_in.values()))
    out_total = property(lambda self: sum(self.crossed_out.values()))

    def text(self) -> str:
        return f"{self.name}: in {self.in_total}, out {self.out_total}"


@dataclass(frozen=True)
class ZoneState:
    """A zone's counts at one moment. ``polygon``: float [K, 2] frame pixels; counts by class name."""

    name: str
    polygon: np.ndarray
    inside: dict[str, int] = field(default_factory=dict)
    entries: dict[str, int] = field(default_factory=dict)

    inside_total = property(lambda self: sum(self.inside.values()))
    entries_total = property(lambda self: sum(self.entries.values()))

    def text(self) -> str:
        return f"{self.name}: inside {self.inside_total}, entries {self.entries_total}"


class LineCounter:
    """Counts tracks crossing one line, per class, with the time of every crossing.

    Args:
        name, shape: "line 1" (shown on the overlay and in the counts file); the line as given.
        points: float [2, 2], its two points in frame pixels.
    """

    def __init__(self, name: str, shape: Shape, points: np.ndarray) -> None:
        import supervision as sv

        self.name, self.shape = name, shape
        self.points = np.asarray(points, np.float64).reshape(2, 2)
        (x1, y1), (x2, y2) = self.points
        # One anchor: a box counts as crossed when its bottom centre has. (supervision's default of
        # all four corners waits until the whole box is across, and skips a box straddling the line.)
        self._zone = sv.LineZone(start=sv.Point(x1, y1), end=sv.Point(x2, y2),
                                 triggering_anchors=(sv.Position.BOTTOM_CENTER,), minimum_crossing_threshold=CONFIRM)
        self.events: list[CountEvent] = []

    def update(self, tracked, class_names: tuple[str, ...], frame: int, timestamp_s: float) -> None:
        """Feed one frame's tracks (``sv.Detections`` with ``tracker_id``); new crossings join ``events``."""
        crossed_in, crossed_out = self._zone.trigger(tracked)  # an empty frame ages its memory of tracks gone
        self.events += [CountEvent(timestamp_s, frame, int(tracked.tracker_id[i]),
                                   class_names[int(tracked.class_id[i])], event)
                        for mask, event in ((crossed_in, "in"), (crossed_out, "out")) for i in np.flatnonzero(mask)]

    def state(self, class_names: tuple[str, ...]) -> LineState:
        return LineState(self.name, self.points.copy(), _by_name(self._zone.in_count_per_class, class_names),
                         _by_name(self._zone.out_count_per_class, class_names))


class ZoneCounter:
    """Counts the tracks inside one polygon now, and every entry, per class, with its time.

    A track seen inside for the first time counts as an entry, whether it walked in or appeared
    there; it counts again only after it has been seen outside (an "exit") and comes back. A change
    counts once seen in ``CONFIRM`` detected frames in a row (the first sighting decides at once).

    Args:
        name, shape: "zone 1"; the zone as given.
        polygon: float [K, 2], its points in frame pixels.
    """

    def __init__(self, name: str, shape: Shape, polygon: np.ndarray) -> None:
        import supervision as sv

        self.name, self.shape = name, shape
        self.polygon = np.asarray(polygon, np.float64).reshape(-1, 2)
        self._zone = sv.PolygonZone(polygon=np.round(self.polygon).astype(np.int64),
                                    triggering_anchors=(sv.Position.BOTTOM_CENTER,))
        self._inside_ids: dict[int, bool] = {}  # track id → confirmed inside
        self._pending: dict[int, int] = {}  # track id → frames in a row seen on the other side
        self._inside_now: Counter[str] = Counter()
        self._entries: Counter[str] = Counter()
        self.events: list[CountEvent] = []

    def update(self, tracked, class_names: tuple[str, ...], frame: int, timestamp_s: float,
               alive: set[int]) -> None:
        """Feed one frame's tracks (``sv.Detections`` with ``tracker_id``, every id ≥ 0); ``alive``:
        the IDs the tracker still holds (a track it dropped is forgotten here too). Entries and exits
        join ``events``."""
        self._inside_now = Counter()
        for i, seen in enumerate(self._zone.trigger(tracked)):
            tid, name, seen_in = int(tracked.tracker_id[i]), class_names[int(tracked.class_id[i])], bool(seen)
            was_in = self._inside_ids.get(tid)  # None: the track's first sighting decides at once
            is_in = seen_in
            if was_in is not None and seen_in != was_in:
                self._pending[tid] = self._pending.get(tid, 0) + 1
                if self._pending[tid] < CONFIRM:
                    is_in = was_in  # not confirmed yet: still where it was
            if is_in == seen_in:
                self._pending.pop(tid, None)
            if is_in and not was_in:
                self._entries[name] += 1
                self.events.append(CountEvent(timestamp_s, frame, tid, name, "enter"))
            elif was_in and not is_in:
                self.events.append(CountEvent(timestamp_s, frame, tid, name, "exit"))
            if is_in:
                self._inside_now[name] += 1
            self._inside_ids[tid] = is_in
        for tid in [t for t in self._inside_ids if t not in alive]:
            del self._inside_ids[tid]
            self._pending.pop(tid, None)

    def state(self) -> ZoneState:
        return ZoneState(self.name, self.polygon.copy(), dict(self._inside_now), dict(self._entries))


def _by_name(counts: dict, class_names: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for class_id, n in counts.items():
        name = class_names[int(class_id)] if class_id is not None and 0 <= int(class_id) < len(class_names) else "?"
        out[name] = out.get(name, 0) + int(n)
    return out
