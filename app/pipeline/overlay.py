"""Drawing the tracking overlay into frames (recordings): trails, counting lines and zones with
their counts, and the colour of a track. Pure functions of (image, overlay); the window draws the
same things with QPainter (``app.gui.tracking.draw_overlay``) in the same colours."""

from __future__ import annotations

import colorsys
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from app.analytics.analytics import Overlay

LINE_COLOR = (255, 255, 255)  # RGB
ZONE_COLOR = (255, 200, 0)


def track_color(track_id: int) -> tuple[int, int, int]:
    """A stable RGB colour for a track: the golden-ratio walk round the hue circle gives
    neighbouring IDs well-separated hues, and the same ID always the same colour."""
    hue = (int(track_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_overlay(image: np.ndarray, overlay: Overlay, font_scale: float = 0.5) -> np.ndarray:
    """Draw ``overlay`` into ``image`` (uint8 [H, W, 3] RGB, in place) and return it: zones
    (translucent fill), trails, then lines, each counter labelled with its counts."""
    for zone in overlay.zones:
        pts = np.round(zone.polygon).astype(np.int32).reshape(-1, 1, 2)
        tinted = image.copy()
        cv2.fillPoly(tinted, [pts], ZONE_COLOR)
        cv2.addWeighted(tinted, 0.18, image, 0.82, 0, dst=image)
        cv2.polylines(image, [pts], True, ZONE_COLOR, 2, cv2.LINE_AA)
        x, y = (int(v) for v in zone.polygon.min(axis=0))
        _label(image, zone.text(), (x + 4, y + 4), ZONE_COLOR, font_scale, below=True)
    for tid, points in (overlay.trails or {}).items():
        if len(points) >= 2:
            cv2.polylines(image, [np.round(points).astype(np.int32).reshape(-1, 1, 2)], False, track_color(tid), 2,
                          cv2.LINE_AA)
    for line in overlay.lines:
        (x1, y1), (x2, y2) = np.round(line.points).astype(int)
        cv2.line(image, (x1, y1), (x2, y2), LINE_COLOR, 2, cv2.LINE_AA)
        for x, y in ((x1, y1), (x2, y2)):
            cv2.circle(image, (x, y), 4, LINE_COLOR, cv2.FILLED, cv2.LINE_AA)
        _label(image, line.text(), ((x1 + x2) // 2, (y1 + y2) // 2), LINE_COLOR, font_scale)
    return image


def _label(image: np.ndarray, text: str, anchor: tuple[int, int], color, font_scale: float, below: bool = False) -> None:
    """``text`` on a dark box at ``anchor`` (its top-left when ``below``, else centred above), kept
    inside the image."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    h, w = image.shape[:2]
    x, y = anchor
    if not below:
        x, y = x - tw // 2, y - th - base - 6
    x = max(0, min(x, w - tw - 6))
    y = max(0, min(y, h - th - base - 6))
    region = image[y:y + th + base + 6, x:x + tw + 6]
    region[:] = (region * 0.35).astype(np.uint8)
    cv2.putText(image, text, (x + 3, y + th + 3), cv2.FONT_HERSHEY_SIMPLEX, font_scale, color, 1, cv2.LINE_AA)
