"""Drawing is a pure function of (frame, detections, style)."""

from __future__ import annotations

import numpy as np

from app.render import Style, annotate, draw_detections, stats_line
from detector.detections import Detections
from tests.app.fakes import NAMES


def dets(*boxes) -> Detections:
    return Detections(np.array(boxes, np.float32), [0.87] * len(boxes), [1] * len(boxes), NAMES)


def test_boxes_are_drawn_on_a_copy(frame_rgb):
    before = frame_rgb.copy()
    style = Style(thickness=2)
    out = draw_detections(frame_rgb, dets([100, 120, 300, 400]), style)
    assert np.array_equal(frame_rgb, before)  # the input is untouched
    color = np.array(style.color(1))
    assert np.abs(out[260, 100].astype(int) - color).max() < 40  # left edge, mid-height
    assert np.array_equal(out[260, 200], frame_rgb[260, 200])  # inside the box: unchanged
    assert not np.array_equal(out[100:120, 100:160], frame_rgb[100:120, 100:160])  # the label above the box


def test_no_detections_no_change(frame_rgb):
    assert np.array_equal(draw_detections(frame_rgb, Detections.empty(NAMES)), frame_rgb)


def test_boxes_outside_the_image_are_clipped():
    image = np.zeros((20, 30, 3), np.uint8)
    out = draw_detections(image, dets([-50, -50, 100, 100], [0, 0, 0, 0]))
    assert out.shape == image.shape and out.any()


def test_same_input_same_output(frame_rgb):
    a = annotate(frame_rgb, dets([10, 10, 50, 50]), "12.0 fps")
    b = annotate(frame_rgb, dets([10, 10, 50, 50]), "12.0 fps")
    assert np.array_equal(a, b)


def test_stats_line():
    line = stats_line(29.97, {"backbone": 20.04, "rpn": 3.0, "roi_heads": 7.5, "total": 30.5}, 300)
    assert line == "30.0 fps | backbone 20.0 rpn 3.0 roi_heads 7.5 ms | 300 proposals"
    assert stats_line(None, {}) == "-- fps"
