"""Drawing, as pure functions of (frame, detections, style): nothing here keeps state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from app.pipeline.overlay import draw_overlay, track_color
from detector.detections import Detections

if TYPE_CHECKING:
    from app.analytics.analytics import Overlay


@dataclass(frozen=True)
class Style:
    """How boxes and labels look. Colours are RGB."""

    thickness: int = 2
    font_scale: float = 0.5
    text_color: tuple[int, int, int] = (255, 255, 255)
    stats_color: tuple[int, int, int] = (255, 255, 0)
    show_scores: bool = True
    palette: tuple[tuple[int, int, int], ...] = (
        (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
        (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    )

    def color(self, class_id: int) -> tuple[int, int, int]:
        return self.palette[int(class_id) % len(self.palette)]


DEFAULT_STYLE = Style()


def draw_detections(image: np.ndarray, detections: Detections, style: Style = DEFAULT_STYLE) -> np.ndarray:
    """A copy of ``image`` (uint8 [H, W, 3], RGB) with a box and a "class score" label per detection;
    a tracked detection gets its track's colour and "#id" after the score.

    Boxes are (x1, y1, x2, y2) in the image's pixels; the input is not modified.
    """
    out = np.ascontiguousarray(image).copy()
    h, w = out.shape[:2]
    track_ids = detections.track_ids if detections.track_ids is not None else np.full(len(detections), -1)
    for box, score, class_id, track_id in zip(detections.boxes, detections.scores, detections.class_ids, track_ids, strict=True):
        x1, y1, x2, y2 = np.clip(np.round(box), 0, (w - 1, h - 1, w - 1, h - 1)).astype(int).tolist()
        color = track_color(track_id) if track_id >= 0 else style.color(class_id)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, style.thickness, cv2.LINE_AA)
        label = detections.class_names[int(class_id)]
        if style.show_scores:
            label = f"{label} {float(score):.2f}"
        if track_id >= 0:
            label = f"{label} #{int(track_id)}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, style.font_scale, 1)
        ty = y1 - 3 if y1 - th - base - 3 >= 0 else y1 + th + 3  # above the box, or inside at the top
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 2, ty + base - 1), color, cv2.FILLED)
        cv2.putText(out, label, (x1 + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, style.font_scale, style.text_color, 1, cv2.LINE_AA)
    return out


def stats_line(fps: float | None, stage_ms: Mapping[str, float], proposals: int | None = None) -> str:
    """One short line: "12.3 fps | backbone 40.1 rpn 3.2 roi_heads 20.0 ms | 300 proposals"."""
    parts = [f"{fps:.1f} fps" if fps else "-- fps"]
    stages = [f"{name} {ms:.1f}" for name, ms in stage_ms.items() if name != "total"]
    if stages:
        parts.append(" ".join(stages) + " ms")
    if proposals:
        parts.append(f"{proposals} proposals")
    return " | ".join(parts)


def draw_text_line(image: np.ndarray, text: str, style: Style = DEFAULT_STYLE) -> np.ndarray:
    """``image`` with ``text`` on a dark band at the top-left; draws in place and returns it."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, style.font_scale, 1)
    tw, band = min(tw + 8, image.shape[1]), th + base + 8
    region = image[:band, :tw]
    region[:] = (region * 0.4).astype(np.uint8)  # darken rather than cover: the scene stays visible
    cv2.putText(image, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, style.font_scale, style.stats_color, 1, cv2.LINE_AA)
    return image


def annotate(image: np.ndarray, detections: Detections, text: str | None = None, style: Style = DEFAULT_STYLE,
             overlay: Overlay | None = None) -> np.ndarray:
    """Boxes, labels, (optionally) the tracking overlay — trails, lines and zones with their counts —
    and the stats line: a new image, the input untouched."""
    out = draw_detections(image, detections, style)
    if overlay is not None:
        draw_overlay(out, overlay, style.font_scale)
    return draw_text_line(out, text, style) if text else out
