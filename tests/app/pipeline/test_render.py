"""Drawing is a pure function of (frame, detections, style)."""

from __future__ import annotations

import numpy as np

from app.pipeline.render import Style, annotate, draw_detections, stats_line
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


def test_a_tracked_box_takes_its_tracks_colour_and_id(frame_rgb):
    from app.pipeline.overlay import track_color

    style = Style(thickness=2)
    det = dets([100, 120, 300, 400])
    untracked = draw_detections(frame_rgb, det, style)
    tracked = draw_detections(frame_rgb, det.with_track_ids([7]), style)
    assert np.abs(tracked[260, 100].astype(int) - np.array(track_color(7))).max() < 40  # left edge in the ID's colour
    assert track_color(7) != style.color(1) and track_color(7) == track_color(7)
    label = (slice(95, 120), slice(100, 300))
    assert not np.array_equal(untracked[label], tracked[label])  # "person 0.87 #7" is longer
    assert len({track_color(i) for i in range(12)}) == 12  # neighbouring IDs differ


def test_the_overlay_draws_lines_zones_and_trails(frame_rgb):
    from app.analytics.analytics import Overlay
    from app.analytics.count import LineState, ZoneState
    from app.pipeline.overlay import LINE_COLOR, track_color

    overlay = Overlay(trails={3: np.array([[50, 500], [150, 500], [250, 500]], np.float32)},
                      lines=(LineState("line 1", np.array([[400, 50], [400, 550]], np.float64), {"person": 2}, {}),),
                      zones=(ZoneState("zone 1", np.array([[500, 300], [700, 300], [700, 500]], np.float64), {}, {}),))
    out = annotate(frame_rgb, Detections.empty(NAMES), overlay=overlay)
    assert np.abs(out[450, 400].astype(int) - np.array(LINE_COLOR)).max() < 30  # on the line
    assert np.abs(out[500, 200].astype(int) - np.array(track_color(3))).max() < 40  # on the trail
    assert not np.array_equal(out[420:480, 600:690], frame_rgb[420:480, 600:690])  # the zone is tinted
    assert np.array_equal(annotate(frame_rgb, Detections.empty(NAMES)), frame_rgb)  # no overlay, no change
