"""Heat map: where tracked objects stood (their boxes' bottom centres), per class, over the
stream's first frame.

``Heat`` adds, for every detected frame, a small Gaussian spot at each tracked object's feet to one
float map per class, at a quarter of the frame's size (a few µs per object; supervision's
``HeatMapAnnotator`` redraws a full-frame mask per call, which cost more than the tracker).

``HeatmapSink`` writes ``OUT.png`` (all classes) and ``OUT-<class>.png`` (each class) when the
run ends, also after Ctrl-C. ``Heat.render`` is what the window's heat-map toggle draws.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from app.errors import UserError
from app.io import Closing

SCALE = 4  # the map's cells are SCALE × SCALE frame pixels
SIGMA = 2.0  # the spot's spread, in cells
OPACITY = 0.6


class Heat:
    """Per-class maps of where tracked objects stood. Thread-safe (``add`` on the sink thread,
    ``render`` from the window)."""

    def __init__(self) -> None:
        self._maps: dict[str, np.ndarray] = {}
        self._shape: tuple[int, int] | None = None  # map (rows, cols)
        self.background: np.ndarray | None = None  # uint8 [H, W, 3] RGB, the first frame
        self.points = 0
        self._lock = threading.Lock()
        r = int(3 * SIGMA)
        y, x = np.mgrid[-r: r + 1, -r: r + 1]
        self._spot = np.exp(-(x * x + y * y) / (2 * SIGMA * SIGMA)).astype(np.float32)

    def add(self, image: np.ndarray, detections) -> None:
        """One detected frame: ``image`` uint8 [H, W, 3] (kept once, the first), ``detections``
        with ``track_ids`` (only tracked rows, id ≥ 0, count; None — tracking switched off — adds nothing)."""
        if detections.track_ids is None:
            return
        with self._lock:
            if self.background is None:
                self.background = image.copy()
                h, w = image.shape[:2]
                self._shape = ((h + SCALE - 1) // SCALE, (w + SCALE - 1) // SCALE)
            rows, cols = self._shape
            r = self._spot.shape[0] // 2
            for box, name, tid in zip(detections.boxes, detections.labels, detections.track_ids, strict=True):
                if tid < 0:
                    continue
                heat = self._maps.get(name)
                if heat is None:
                    heat = self._maps[name] = np.zeros(self._shape, np.float32)
                cx = int(round((float(box[0]) + float(box[2])) / 2 / SCALE))
                cy = int(round(float(box[3]) / SCALE))
                y0, y1, x0, x1 = max(0, cy - r), min(rows, cy + r + 1), max(0, cx - r), min(cols, cx + r + 1)
                if y0 >= y1 or x0 >= x1:
                    continue
                heat[y0:y1, x0:x1] += self._spot[y0 - cy + r: y1 - cy + r, x0 - cx + r: x1 - cx + r]
                self.points += 1

    @property
    def classes(self) -> list[str]:
        with self._lock:
            return sorted(self._maps)

    def render(self, class_name: str | None = None, background: np.ndarray | None = None) -> np.ndarray | None:
        """The map of ``class_name`` (None = all classes) coloured (cold blue → hot red) over
        ``background`` (default: the first frame), uint8 [H, W, 3] RGB; None before any frame."""
        import cv2

        with self._lock:
            if self.background is None:
                return None
            base = self.background if background is None else background
            maps = self._maps.values() if class_name is None else [self._maps.get(class_name, 0)]
            heat = sum(maps, np.zeros(self._shape, np.float32))  # a new array, safe after the lock
        h, w = base.shape[:2]
        heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
        top = float(heat.max())
        if top <= 0:
            return base.copy()
        level = np.sqrt(heat / top)  # a square root, so that a path walked once still shows
        colour = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        alpha = (np.clip(level * 4, 0, 1) * OPACITY)[..., None]  # where nobody stood the frame shows through
        return (base * (1 - alpha) + colour * alpha).astype(np.uint8)


class HeatmapSink(Closing):
    """Feeds a ``Heat`` with every detected result and writes the PNGs on close."""

    needs_image = False

    def __init__(self, path: str | Path, *, overwrite: bool = False) -> None:
        self.path, self.overwrite = Path(path), overwrite
        self.heat = Heat()
        self.written: list[Path] = []
        self.kept: list[Path] = []  # per-class files that existed (without overwrite: left untouched)

    def write(self, result, annotated) -> None:
        if result.detected:
            self.heat.add(result.frame.image, result.detections)

    def _close(self) -> None:
        import cv2

        if self.heat.background is None:
            return
        for name in (None, *self.heat.classes):
            path = self.path if name is None else self.path.with_name(f"{self.path.stem}-{_safe(name)}.png")
            if name is not None and path.exists() and not self.overwrite:
                self.kept.append(path)
                continue
            image = self.heat.render(name)
            if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
                raise UserError(f"heat map {path} could not be written")
            self.written.append(path)

    def summary(self) -> str:
        if not self.written:
            return f"heat map: none written to {self.path} (no frame was tracked)"
        extra = f" + {len(self.written) - 1} per class" if len(self.written) > 1 else ""
        kept = f"; {len(self.kept)} existing per-class file(s) left untouched (--overwrite replaces them)" if self.kept else ""
        return f"heat map: {self.path.resolve()}{extra} ({self.heat.points} positions){kept}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name) or "class"
