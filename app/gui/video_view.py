"""The video area: the newest frame, scaled to fit, with the detections drawn over it by QPainter.

Boxes are drawn in window pixels rather than burnt into the frame, so labels stay sharp at any window
size and the frame itself is never copied for display. ``annotated_image`` draws the same overlay at
the frame's own resolution (screenshots).
"""

from __future__ import annotations

from PyQt6.QtCore import QPointF, QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QImage, QPainter, QPen
from PyQt6.QtWidgets import QSizePolicy, QWidget

from app.gui.tracking import draw_overlay
from app.gui.widgets import set_font
from app.pipeline.overlay import track_color
from app.pipeline.render import DEFAULT_STYLE
from detector.detections import Detections

BACKGROUND = QColor(24, 26, 30)


def draw_detections(painter: QPainter, detections: Detections, scale: float = 1.0,
                    offset: QPointF | None = None, font_px: float = 13.0, bounds: QRectF | None = None) -> None:
    """Draw boxes with "class score" labels ("class score #id" and the track's colour when tracked).

    Args:
        painter: an active painter on the target.
        detections: boxes in frame pixels (x1, y1, x2, y2).
        scale, offset: frame pixels → target pixels (``target = frame * scale + offset``).
        font_px: label height in target pixels.
        bounds: the frame's area on the target; labels stay inside it (above a box when there is
            room, else inside the box's top). None = from y 0.
    """
    if not len(detections):
        return
    offset = offset or QPointF(0.0, 0.0)
    metrics = set_font(painter, font_px, bold=True)
    pen_width = max(1.5, 2.0 * min(1.0, scale * 1.5))
    names = detections.class_names
    top_limit = bounds.top() if bounds is not None else 0.0
    for i in detections.scores.argsort():  # low scores first: the confident boxes end up on top
        x1, y1, x2, y2 = (float(v) for v in detections.boxes[i])
        rect = QRectF(x1 * scale + offset.x(), y1 * scale + offset.y(), (x2 - x1) * scale, (y2 - y1) * scale)
        class_id = int(detections.class_ids[i])
        track_id = int(detections.track_ids[i]) if detections.track_ids is not None else -1
        # the colours of the recordings (app.pipeline.render), so the window and the files agree
        color = QColor(*(track_color(track_id) if track_id >= 0 else DEFAULT_STYLE.color(class_id)))
        painter.setPen(QPen(color, pen_width))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(rect)
        label = f"{names[class_id]} {float(detections.scores[i]):.2f}"
        if track_id >= 0:
            label += f" #{track_id}"
        text_w, text_h = metrics.horizontalAdvance(label) + 6, metrics.height() + 2
        top = rect.top() - text_h if rect.top() - text_h >= top_limit else rect.top()
        label_rect = QRectF(rect.left() - pen_width / 2, top, text_w, text_h)
        painter.fillRect(label_rect, color.darker(160))
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(label_rect, Qt.AlignmentFlag.AlignCenter, label)


class VideoView(QWidget):
    """Shows one frame and its detections; ``set_frame`` from the GUI thread only."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)  # we paint every pixel
        self.image: QImage | None = None
        self.detections: Detections | None = None
        self.overlay = None  # app.analytics.analytics.Overlay: trails, lines and zones with their counts
        self.tool = None  # app.gui.tracking.ShapeTool: paints the line or zone being drawn
        self._placeholder = "No video — open a file or a camera from the File menu"
        self._badges = {"paused": False, "recording": False}

    # ------------------------------------------------------------------ state
    def set_frame(self, image: QImage, detections: Detections | None = None, overlay=None) -> None:
        self.image, self.detections, self.overlay = image, detections, overlay
        self.update()

    def set_detections(self, detections: Detections | None) -> None:
        """Redraw the current frame with other detections (a knob moved while paused or slow)."""
        self.detections = detections
        self.update()

    def set_badge(self, name: str, on: bool) -> None:
        """Show or hide the "paused" or the "recording" badge."""
        self._badges[name] = bool(on)
        self.update()

    def clear(self, placeholder: str | None = None) -> None:
        self.image, self.detections, self.overlay = None, None, None
        if placeholder is not None:
            self._placeholder = placeholder
        self.update()

    def sizeHint(self) -> QSize:
        return self.image.size() if self.image is not None else QSize(768, 576)

    # ------------------------------------------------------------------ geometry
    def image_rect(self) -> QRectF:
        """Where the frame lands in the widget (aspect ratio kept, centred)."""
        if self.image is None or self.image.isNull():
            return QRectF()
        iw, ih = self.image.width(), self.image.height()
        scale = min(self.width() / iw, self.height() / ih)
        w, h = iw * scale, ih * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    # ------------------------------------------------------------------ painting
    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        if self.image is None or self.image.isNull():
            painter.setPen(QColor(170, 175, 185))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
            painter.end()
            return
        target = self.image_rect()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        painter.drawImage(target, self.image)
        scale = target.width() / self.image.width()
        font_px = max(11.0, min(15.0, 13.0 * scale))
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.save()
        painter.setClipRect(target)  # boxes, labels and shapes never spill into the letterbox
        self._draw_results(painter, scale, target.topLeft(), font_px, bounds=target)
        if self.tool is not None:  # the shape being drawn with the mouse
            self.tool.paint(painter, target)
        painter.restore()
        self._draw_badges(painter, target)
        painter.end()

    def _draw_badges(self, painter: QPainter, target: QRectF) -> None:
        """"PAUSED" and "● REC" in the frame's top corners (window only, never in screenshots)."""
        metrics = set_font(painter, 13, bold=True)
        for name, text, color, right in (("paused", "❚❚ PAUSED", QColor(45, 108, 223), False),
                                         ("recording", "● REC", QColor(192, 57, 43), True)):
            if not self._badges[name]:
                continue
            w, h = metrics.horizontalAdvance(text) + 16, metrics.height() + 8
            x = target.right() - w - 10 if right else target.left() + 10
            badge = QRectF(x, target.top() + 10, w, h)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(color)
            painter.drawRoundedRect(badge, 4, 4)
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)

    def annotated_image(self) -> QImage | None:
        """The current frame at its own resolution with the detections drawn (a copy)."""
        if self.image is None or self.image.isNull():
            return None
        out = self.image.convertToFormat(QImage.Format.Format_RGB32)
        painter = QPainter(out)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        self._draw_results(painter, 1.0, None, max(12.0, out.height() / 40))
        painter.end()
        return out

    def _draw_results(self, painter: QPainter, scale: float, offset: QPointF | None, font_px: float,
                      bounds: QRectF | None = None) -> None:
        """The boxes, then the trails, lines and zones with their counts."""
        if self.detections is not None:
            draw_detections(painter, self.detections, scale, offset, font_px=font_px, bounds=bounds)
        if self.overlay is not None:
            draw_overlay(painter, self.overlay, scale, offset, font_px=font_px)
