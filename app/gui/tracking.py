"""Tracking and counting in the window: the overlay drawn with QPainter, the mouse tool that draws
a counting line or zone on the video, and the side panel's "Tracking" box.

- ``draw_overlay``: trails, lines and zones with their counts, in the colours of the recordings
  (``app.pipeline.overlay``), in window pixels.
- ``ShapeTool``: an event filter on the ``VideoView``. "Draw line": press at one end, release at the
  other. "Draw zone": click the corners, double-click (or right-click, or Enter) to close it with
  three or more; Esc cancels. Points are taken as fractions of the frame, so a line drawn once
  fits any source. Emits ``shape_drawn("line" | "zone", (x1, y1, x2, y2, …))``.
- ``TrackingPanel`` only shows the switches, drawing buttons and counts; ``TrackingControl`` ties it
  to the mouse tool and passes its requests to the controller.
"""

from __future__ import annotations

from PyQt6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFontMetricsF, QPainter, QPen, QPolygonF
from PyQt6.QtWidgets import QCheckBox, QHBoxLayout, QVBoxLayout, QWidget

from app.analytics.analytics import Overlay
from app.gui.widgets import box, button, muted_label, set_checked_quietly, set_font
from app.pipeline.overlay import LINE_COLOR, ZONE_COLOR, track_color

DRAFT_COLOR = QColor(255, 235, 59)


def draw_overlay(painter: QPainter, overlay: Overlay, scale: float = 1.0, offset: QPointF | None = None,
                 font_px: float = 13.0) -> None:
    """Zones (translucent), trails and lines with their counts; frame pixels → ``target = frame * scale + offset``."""
    offset = offset or QPointF(0.0, 0.0)
    metrics = set_font(painter, font_px, bold=True)

    def mapped(points) -> list[QPointF]:
        return [QPointF(x * scale + offset.x(), y * scale + offset.y()) for x, y in points]

    for zone in overlay.zones:
        poly = QPolygonF(mapped(zone.polygon))
        painter.setPen(QPen(QColor(*ZONE_COLOR), 2))
        painter.setBrush(QColor(*ZONE_COLOR, 45))
        painter.drawPolygon(poly)
        box = poly.boundingRect()
        _label(painter, metrics, zone.text(), QPointF(box.left() + 4, box.top() + 4), QColor(*ZONE_COLOR), below=True)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    for tid, points in (overlay.trails or {}).items():
        if len(points) >= 2:
            painter.setPen(QPen(QColor(*track_color(tid)), 2))
            painter.drawPolyline(QPolygonF(mapped(points)))
    for line in overlay.lines:
        a, b = mapped(line.points)
        painter.setPen(QPen(QColor(*LINE_COLOR), 2.5))
        painter.drawLine(a, b)
        _label(painter, metrics, line.text(), (a + b) / 2, QColor(*LINE_COLOR))


def _label(painter: QPainter, metrics: QFontMetricsF, text: str, anchor: QPointF, color: QColor, below: bool = False) -> None:
    w, h = metrics.horizontalAdvance(text) + 8, metrics.height() + 4
    rect = QRectF(anchor.x(), anchor.y(), w, h) if below else QRectF(anchor.x() - w / 2, anchor.y() - h - 4, w, h)
    painter.fillRect(rect, QColor(0, 0, 0, 170))
    painter.setPen(color)
    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)


class ShapeTool(QObject):
    """Draws a counting line or zone on a ``VideoView`` with the mouse (see the module's docstring).

    Signals: ``shape_drawn(str kind, tuple coords)`` with coords in fractions of the frame;
    ``mode_changed(str)`` ("" when idle).
    """

    shape_drawn = pyqtSignal(str, tuple)
    mode_changed = pyqtSignal(str)

    def __init__(self, view) -> None:
        super().__init__(view)
        self.mode = ""
        self.points: list[QPointF] = []  # fractions of the frame
        self.hover: QPointF | None = None
        self._attach(view)

    def _attach(self, view) -> None:
        """Take ``view``'s mouse and keys, and paint the shape being drawn on it."""
        self.view, view.tool = view, self
        view.installEventFilter(self)
        view.setMouseTracking(True)

    def retarget(self, view) -> None:
        """Draw on ``view`` from now on (the grid's cell in focus); a shape being drawn is dropped."""
        if view is self.view:
            return
        if self.mode:
            self.start("")
        self.view.removeEventFilter(self)
        self.view.tool = None
        self.view.update()
        self._attach(view)

    def start(self, mode: str) -> None:
        """Start drawing a "line" or a "zone" ("" cancels)."""
        if mode not in ("", "line", "zone"):
            raise ValueError(f"draw mode {mode!r} is unknown; expected line or zone")
        self.mode, self.points, self.hover = mode, [], None
        self.view.setCursor(Qt.CursorShape.CrossCursor if mode else Qt.CursorShape.ArrowCursor)
        if mode:
            self.view.setFocus()
        self.view.update()
        self.mode_changed.emit(mode)

    def to_fraction(self, pos: QPointF) -> QPointF | None:
        """A widget position as a fraction of the frame (clamped to it); None without a frame."""
        rect = self.view.image_rect()
        if rect.isEmpty():
            return None
        fx = min(1.0, max(0.0, (pos.x() - rect.left()) / rect.width()))
        fy = min(1.0, max(0.0, (pos.y() - rect.top()) / rect.height()))
        return QPointF(fx, fy)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt's name)
        if obj is not self.view or not self.mode:
            return False
        kind = event.type()
        if kind in (QEvent.Type.KeyPress, QEvent.Type.ShortcutOverride):
            key = event.key()
            closes = key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.mode == "zone"
            if key != Qt.Key.Key_Escape and not closes:
                return False
            if kind == QEvent.Type.ShortcutOverride:
                event.accept()  # the key comes to us as a key press, not to the window's Esc (quit)
            elif closes:
                self._finish()
            else:
                self.start("")
            return True
        if kind not in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease,
                        QEvent.Type.MouseMove, QEvent.Type.MouseButtonDblClick):
            return False
        point = self.to_fraction(event.position())
        if point is None:
            return False
        if kind == QEvent.Type.MouseMove:
            self.hover = point
            self.view.update()
            return True
        button = event.button()
        if self.mode == "line":
            if kind == QEvent.Type.MouseButtonPress and button == Qt.MouseButton.LeftButton:
                self.points = [point]
            elif kind == QEvent.Type.MouseButtonRelease and button == Qt.MouseButton.LeftButton and self.points:
                if _far(self.points[0], point, self.view.image_rect()):
                    self.points.append(point)
                    self._finish()
                else:
                    self.points = []  # a click, not a drag: nothing to draw yet
            return True
        # zone
        if kind == QEvent.Type.MouseButtonPress and button == Qt.MouseButton.LeftButton:
            if not self.points or _far(self.points[-1], point, self.view.image_rect()):
                self.points.append(point)
        elif kind == QEvent.Type.MouseButtonDblClick or (kind == QEvent.Type.MouseButtonPress
                                                         and button == Qt.MouseButton.RightButton):
            self._finish()
        self.view.update()
        return True

    def _finish(self) -> None:
        kind, points = self.mode, list(self.points)
        if len(points) < (2 if kind == "line" else 3):
            return  # a zone needs a third corner: keep drawing
        coords = tuple(round(v, 4) for p in points for v in (p.x(), p.y()))
        self.start("")
        self.shape_drawn.emit(kind, coords)

    def paint(self, painter: QPainter, target: QRectF) -> None:
        """The shape being drawn, over the frame shown in ``target``."""
        if not self.mode or not self.points:
            return
        pts = [QPointF(target.left() + p.x() * target.width(), target.top() + p.y() * target.height())
               for p in (*self.points, *([self.hover] if self.hover is not None else []))]
        painter.setPen(QPen(DRAFT_COLOR, 2, Qt.PenStyle.DashLine))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPolyline(QPolygonF(pts))
        for p in pts[: len(self.points)]:
            painter.drawEllipse(p, 3, 3)


def _far(a: QPointF, b: QPointF, rect: QRectF, min_px: float = 4.0) -> bool:
    """Whether two fractional points are at least ``min_px`` window pixels apart."""
    return ((a.x() - b.x()) * rect.width()) ** 2 + ((a.y() - b.y()) * rect.height()) ** 2 >= min_px ** 2


class TrackingPanel(QWidget):
    """The "Tracking" box: switches, drawing buttons, and the counts (``TrackingControl`` wires them)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.track_check = QCheckBox("Track objects (IDs)")  # both follow the first source's config (adopt)
        self.track_check.setToolTip("ByteTrack: a persistent ID per object, drawn as #ID\n"
                                    "lines and zones keep tracking on while they exist")
        self.trails_check = QCheckBox("Trails")
        self.trails_check.setChecked(True)
        self.trails_check.setToolTip("draw each track's path over the last 2 s")
        self.line_button = button("Draw line", "drag across the video: objects crossing it are counted in / out "
                                  "by class", checkable=True)
        self.zone_button = button("Draw zone", "click the corners on the video, double-click to close:\n"
                                  "objects inside now and entries by class (Esc cancels)", checkable=True)
        self.clear_button = button("Clear", "remove every line and zone")
        self.counts_label = muted_label(wrap=True)
        box(QVBoxLayout(self), box(QHBoxLayout(), self.track_check, self.trails_check),
            box(QHBoxLayout(), self.line_button, self.zone_button, self.clear_button), self.counts_label)
        self.show_counts(None, 0)

    def show_mode(self, mode: str) -> None:
        """Reflect the drawing tool's mode on the buttons."""
        set_checked_quietly(mode == "line", self.line_button)
        set_checked_quietly(mode == "zone", self.zone_button)

    def show_counts(self, overlay: Overlay | None, shapes: int) -> None:
        texts = overlay.texts() if overlay is not None else []
        self.counts_label.setText("\n".join(texts) if texts else
                                  f"{shapes} counter(s) — counts appear with the next frame" if shapes else
                                  "no lines or zones — draw one on the video")


class TrackingControl(QObject):
    """The window's tracking state, tied to its panel, its mouse tool and the controller.

    ``state`` (track, trails, lines, zones) starts from the first source's config — the command
    line's ``--track``, ``--line``, ``--zone`` — and from then on follows the panel; ``adopt(config)``
    gives every source the window opens the current state. Changes reach the running pipeline as
    controller knobs, from its next frame on.

    Signals: ``changed(dict)`` the new state; ``message(str)`` a line for the status bar.
    """

    changed = pyqtSignal(dict)
    message = pyqtSignal(str)

    def __init__(self, panel: TrackingPanel, tool: ShapeTool, controller) -> None:
        super().__init__(panel)
        self.panel, self.tool, self.controller = panel, tool, controller
        self.state: dict | None = None
        panel.track_check.toggled.connect(lambda on: self.set(track=on))
        panel.trails_check.toggled.connect(lambda on: self.set(trails=on))
        panel.line_button.clicked.connect(lambda on: tool.start("line" if on else ""))
        panel.zone_button.clicked.connect(lambda on: tool.start("zone" if on else ""))
        panel.clear_button.clicked.connect(lambda: self.set(lines=(), zones=()))
        tool.mode_changed.connect(panel.show_mode)
        tool.shape_drawn.connect(self.add_shape)

    @property
    def shapes(self) -> int:
        return len(self.state["lines"]) + len(self.state["zones"]) if self.state else 0

    def adopt(self, config):
        """``config`` with the window's tracking state (the first config sets that state)."""
        if self.state is None:
            self.state = {k: getattr(config, k) for k in ("track", "trails", "lines", "zones")}
            set_checked_quietly(config.track, self.panel.track_check)
            set_checked_quietly(config.trails, self.panel.trails_check)
        return config.with_(**self.state)

    def set(self, **changes) -> None:
        """Change ``track``, ``trails``, ``lines`` or ``zones`` now and for later sources."""
        state = self.state = {**(self.state or {"track": False, "trails": True, "lines": (), "zones": ()}), **changes}
        for name in ("track", "trails"):
            if name in changes:
                self.controller.set_knob(name, state[name])
        if "lines" in changes or "zones" in changes:
            self.controller.set_knob("counters", (state["lines"], state["zones"]))
        self.changed.emit(dict(state))

    def add_shape(self, kind: str, coords: tuple) -> None:
        """A line or zone drawn on the video (fractions of the frame) becomes a counter."""
        key = "lines" if kind == "line" else "zones"
        self.set(**{key: (*(self.state or {}).get(key, ()), tuple(coords))})
        self.message.emit(f"{kind} added: objects are counted from the next frame on")
