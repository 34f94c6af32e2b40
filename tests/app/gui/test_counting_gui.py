"""Tracking in the window, offscreen: a line and a zone drawn with simulated mouse events become
counters of the running pipeline, and the overlay and the counts follow; the switches reach it too.

(Named to run before test_main_window.py: after its run_gui test, which quits the application, the
windows that later tests of the same pytest process open never hear from their controller — seen
only under pytest, not in a plain script; left for whoever owns that test.)"""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6.QtCore import QPoint, Qt

from app.config import PipelineConfig
from app.gui.bridge import rgb_to_qimage
from app.gui.main_window import MainWindow
from app.gui.tracking import ShapeTool
from app.gui.video_view import VideoView
from tests.app.gui.images import qimage_to_array
from tests.conftest import cut_clip

WAIT_MS = 30_000


@pytest.fixture(scope="module")
def clip60(tmp_path_factory):
    """60 frames of the sample: played at its own 10 fps, a run lasts 6 s — time to pause it."""
    return cut_clip(tmp_path_factory.mktemp("clips") / "clip60.mp4", 60)


@pytest.fixture
def window(qtbot, gui_detector, tmp_path):
    win = MainWindow(gui_detector, output_dir=tmp_path, pace_files=True)
    qtbot.addWidget(win)
    win.resize(1000, 640)
    win.show()
    yield win
    win.close()


def at(view, fx: float, fy: float) -> QPoint:
    """The widget pixel showing the frame point at fractions (fx, fy)."""
    rect = view.image_rect()
    return QPoint(round(rect.left() + fx * rect.width()), round(rect.top() + fy * rect.height()))


def paused_on_a_frame(qtbot, window, clip) -> None:
    window.open_source(PipelineConfig(source_kind="video", source=str(clip)))
    qtbot.waitUntil(lambda: window.frames_displayed >= 1, timeout=WAIT_MS)
    window.set_paused(True)
    qtbot.waitUntil(lambda: window.is_paused, timeout=WAIT_MS)


def test_drawing_a_line_with_the_mouse_creates_a_counter(qtbot, window, clip60):
    paused_on_a_frame(qtbot, window, clip60)
    pipeline = window.controller.pipeline
    assert pipeline is not None and pipeline.analytics.lines == []
    view = window.view

    qtbot.mouseClick(window.tracking_panel.line_button, Qt.MouseButton.LeftButton)
    assert view.tool.mode == "line" and window.tracking_panel.line_button.isChecked()
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=at(view, 0.5, 0.1))
    qtbot.mouseMove(view, at(view, 0.5, 0.5))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=at(view, 0.5, 0.9))

    (line,) = window.config.lines  # the window's config: F5 and the next source keep it
    np.testing.assert_allclose(line, (0.5, 0.1, 0.5, 0.9), atol=0.01)
    assert view.tool.mode == "" and not window.tracking_panel.line_button.isChecked()
    # The controller hands it to the running pipeline: a counter in frame pixels (768×576).
    qtbot.waitUntil(lambda: len(pipeline.analytics.lines) == 1, timeout=WAIT_MS)
    np.testing.assert_allclose(pipeline.analytics.lines[0].points, [[384, 57.6], [384, 518.4]], atol=8)
    assert pipeline.analytics.tracking  # a counter needs IDs: tracking is on

    # A zone: three corners, then a double-click closes it.
    qtbot.mouseClick(window.tracking_panel.zone_button, Qt.MouseButton.LeftButton)
    for fx, fy in ((0.1, 0.1), (0.4, 0.1), (0.4, 0.4)):
        qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=at(view, fx, fy))
    assert view.tool.mode == "zone" and len(view.tool.points) == 3
    qtbot.mouseDClick(view, Qt.MouseButton.LeftButton, pos=at(view, 0.4, 0.4))
    assert len(window.config.zones) == 1 and len(window.config.zones[0]) == 6
    qtbot.waitUntil(lambda: len(pipeline.analytics.zones) == 1, timeout=WAIT_MS)

    # Playing on, the frames come with the line and the zone and their counts.
    window.set_paused(False)  # (a frame detected before the zone came may still be shown first)
    qtbot.waitUntil(lambda: window.view.overlay is not None and len(window.view.overlay.zones) == 1, timeout=WAIT_MS)
    assert len(window.view.overlay.lines) == 1
    assert "line 1: in 0, out 0" in window.tracking_panel.counts_label.text()
    assert "zone 1: inside" in window.tracking_panel.counts_label.text()

    qtbot.mouseClick(window.tracking_panel.clear_button, Qt.MouseButton.LeftButton)
    assert window.config.lines == () and window.config.zones == ()


def test_switches_reach_the_pipeline_and_the_next_source(qtbot, window, clip60):
    paused_on_a_frame(qtbot, window, clip60)
    pipeline = window.controller.pipeline
    assert not pipeline.analytics.tracking
    window.tracking_panel.track_check.setChecked(True)
    qtbot.waitUntil(lambda: pipeline.analytics.tracking, timeout=WAIT_MS)
    window.tracking_panel.trails_check.setChecked(False)
    assert window.config.track and not window.config.trails
    window.restart()  # F5: the new pipeline starts with tracking on
    qtbot.waitUntil(lambda: window.controller.pipeline not in (None, pipeline), timeout=WAIT_MS)
    assert window.controller.pipeline.analytics.tracking


def test_the_command_lines_shapes_come_with_the_first_source(qtbot, window, clip10):
    window.open_source(PipelineConfig(source_kind="video", source=str(clip10), lines=((0.2, 0.2, 0.8, 0.2),),
                                      track=True))
    assert window.tracking_panel.track_check.isChecked()
    assert window.tracking.shapes == 1
    qtbot.waitUntil(lambda: window.view.overlay is not None and len(window.view.overlay.lines) == 1, timeout=WAIT_MS)


def test_a_click_is_not_a_line_and_esc_cancels(qtbot, frame_rgb):
    view = VideoView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    view.set_frame(rgb_to_qimage(frame_rgb))
    tool = ShapeTool(view)
    drawn = []
    tool.shape_drawn.connect(lambda kind, coords: drawn.append((kind, coords)))
    tool.start("line")
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=at(view, 0.3, 0.3))  # press and release in place
    assert drawn == [] and tool.mode == "line"
    before = qimage_to_array(view.grab().toImage())
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=at(view, 0.2, 0.5))
    qtbot.mouseMove(view, at(view, 0.8, 0.5))
    during = qimage_to_array(view.grab().toImage())
    assert (np.abs(during.astype(int) - before).sum(axis=2) > 60).any()  # the draft line is shown
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    assert tool.mode == "" and drawn == []
    tool.start("zone")
    for fx, fy in ((0.1, 0.1), (0.5, 0.1)):
        qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=at(view, fx, fy))
    qtbot.mouseClick(view, Qt.MouseButton.RightButton, pos=at(view, 0.5, 0.1))  # only two corners: keeps going
    assert drawn == [] and tool.mode == "zone"
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=at(view, 0.5, 0.6))
    qtbot.keyClick(view, Qt.Key.Key_Return)
    assert [k for k, _ in drawn] == ["zone"] and len(drawn[0][1]) == 6


def test_esc_while_drawing_in_the_window_cancels_the_shape_not_the_window(qtbot, window, frame_rgb):
    """Esc is also the window's quit shortcut: while a zone is being drawn it cancels the drawing
    (as the tool's docstring says), and the window stays open."""
    view = window.view
    view.set_frame(rgb_to_qimage(frame_rgb))
    qtbot.mouseClick(window.tracking_panel.zone_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=at(view, 0.2, 0.2))
    assert window.shape_tool.mode == "zone" and len(window.shape_tool.points) == 1
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    assert window.shape_tool.mode == "" and not window.tracking_panel.zone_button.isChecked()
    assert window.isVisible() and window.control_thread.isRunning()
    qtbot.keyClick(view, Qt.Key.Key_Escape)  # nothing is drawn now: Esc quits, as before
    assert not window.isVisible()
