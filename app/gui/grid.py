"""A grid of streams: one tile per stream (its video with boxes, and a caption with its fps, latency
and state), laid out 1, 2×1, 2×2, 3×2, 3×3 …; a click on a tile enlarges it, another click (or
``enlarge(None)``) brings the grid back. Widgets only show and emit; they never touch the pipeline."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget

from app.gui.bridge import rgb_to_qimage
from app.gui.video_view import VideoView
from app.gui.widgets import box
from app.stats import PipelineStats


def grid_shape(n: int) -> tuple[int, int]:
    """(columns, rows) for ``n`` tiles: 1 → 1×1, 2 → 2×1, 3–4 → 2×2, 5–6 → 3×2, 7–9 → 3×3 …"""
    if n < 1:
        raise ValueError(f"a grid needs at least one tile; got {n}")
    cols = math.ceil(math.sqrt(n))
    return cols, math.ceil(n / cols)


class StreamTile(QFrame):
    """One stream: its video and a one-line caption. Emits ``clicked(name)``."""

    clicked = pyqtSignal(str)

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("tile")
        self.view = VideoView()
        self.view.setMinimumSize(160, 120)
        self.caption = QLabel(name)
        self.caption.setObjectName("stat")
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        box(QVBoxLayout(self), (self.view, 1), self.caption, margins=(2, 2, 2, 2)).setSpacing(2)
        self.rename(name)

    def rename(self, name: str) -> None:
        """Show another stream from now on (its first frame is awaited)."""
        self.name = name
        self.result = None  # the newest result shown (its detections unfiltered by the window)
        self.view.clear(f"{name}: waiting for the first frame")
        self.caption.setText(name)
        self.setToolTip(f"{name} — click to enlarge, click again for all streams")

    def show_result(self, result, image: np.ndarray) -> None:
        """The newest result of this stream (GUI thread) over ``image``: its frame, uint8 RGB [H, W, 3],
        as it is or decorated (with the heat map under the boxes)."""
        self.result = result
        self.view.set_frame(rgb_to_qimage(image), result.detections, result.overlay)  # trails, lines, zones

    def set_stats(self, stats: PipelineStats | None, state: str) -> None:
        parts = [self.name]
        if stats is not None:
            parts.append(f"{stats.fps:.1f} fps" if stats.fps else "-- fps")
            if stats.latency_ms is not None:
                parts.append(f"{stats.latency_ms:.0f} ms")
            parts.append(f"{stats.frames_written} frames")
            if stats.frames_dropped:
                parts.append(f"{stats.frames_dropped} dropped")
        if state and state != "running":
            parts.append(state)
        self.caption.setText(" · ".join(parts))
        if self.view.image is None and state != "running":  # no frame yet: say why in the tile itself
            self.view.clear(f"{self.name}: {state}")

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.name)
        super().mouseReleaseEvent(event)


class StreamGrid(QWidget):
    """The tiles of ``names`` in a grid; ``enlarged`` is the one shown alone, or None.

    Emits ``enlarged_changed(name or None)``.
    """

    enlarged_changed = pyqtSignal(object)

    def __init__(self, names: Sequence[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.names: list[str] = []
        self.tiles: dict[str, StreamTile] = {}
        self.enlarged: str | None = None
        self._layout = QGridLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self.set_names(names)

    def set_names(self, names: Sequence[str]) -> None:
        """Show the streams ``names`` from now on. Tiles are kept in order (the first tile, and so a
        single stream's view, stays the same widget), added or removed; every tile awaits its first frame."""
        if not names:
            raise ValueError("a grid needs at least one stream")
        tiles = list(self.tiles.values())
        for tile in tiles[len(names):]:
            self._layout.removeWidget(tile)
            tile.deleteLater()
        for name in names[len(tiles):]:
            tile = StreamTile(name)
            tile.clicked.connect(self.toggle)
            tiles.append(tile)
        for tile, name in zip(tiles, names, strict=False):
            tile.rename(name)
        self.names = list(names)
        self.tiles = dict(zip(self.names, tiles, strict=False))
        was = self.enlarged
        self.enlarged = was if was in self.tiles else None
        self._relayout()
        if was is not None and self.enlarged is None:
            self.enlarged_changed.emit(None)

    @property
    def shape(self) -> tuple[int, int]:
        """(columns, rows) on screen now."""
        return (1, 1) if self.enlarged is not None else grid_shape(len(self.names))

    def toggle(self, name: str) -> None:
        """Enlarge ``name``; if it is the enlarged one, show all again."""
        self.enlarge(None if self.enlarged == name else name)

    def enlarge(self, name: str | None) -> None:
        if name is not None and name not in self.tiles:
            raise KeyError(f"no stream {name!r}; the streams are {', '.join(self.names)}")
        if name == self.enlarged:
            return
        self.enlarged = name
        self._relayout()
        self.enlarged_changed.emit(name)

    def _relayout(self) -> None:
        while self._layout.count():
            self._layout.takeAt(0)
        shown = self.names if self.enlarged is None else [self.enlarged]
        cols, rows = self.shape
        for i, name in enumerate(shown):
            self._layout.addWidget(self.tiles[name], i // cols, i % cols)
        for name, tile in self.tiles.items():  # after addWidget: a tile shown without a parent is a window
            tile.setVisible(name in shown)
        for r in range(self._layout.rowCount()):  # the rows and columns in use share the space; the rest none
            self._layout.setRowStretch(r, int(r < rows))
        for c in range(self._layout.columnCount()):
            self._layout.setColumnStretch(c, int(c < cols))
