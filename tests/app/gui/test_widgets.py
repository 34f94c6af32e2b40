"""The status and control widgets on their own, offscreen."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6.QtCore import Qt

from app.gui.bridge import FrameBridge, rgb_to_qimage
from app.gui.fps_meter import Level
from app.gui.video_view import VideoView
from app.gui.widgets import (
    LEVEL_COLORS,
    PROPOSAL_PRESETS,
    ClassChecklist,
    FpsGauge,
    ProposalControl,
    StageBar,
    ThresholdControl,
    position_to_proposals,
    proposals_to_position,
)
from detector.detections import Detections
from tests.app.gui.images import qimage_to_array


def grab(widget) -> np.ndarray:
    """The widget as painted, RGB uint8 [H, W, 3]."""
    return qimage_to_array(widget.grab().toImage())


def test_fps_gauge_marks_take_the_colour_of_their_level(qtbot):
    gauge = FpsGauge()
    qtbot.addWidget(gauge)
    gauge.resize(300, 64)
    gauge.set_fps(45.0)
    s30, s60 = gauge.statuses
    assert (s30.level, s60.level) == (Level.MET, Level.MISSED)
    image = grab(gauge)
    track_y = 38  # the middle of the bar's track
    for status in (s30, s60):
        x = round(gauge.width() * status.target / gauge.scale_max())
        colour = LEVEL_COLORS[status.level]
        column = image[track_y - 8 : track_y + 8, x - 1 : x + 2].reshape(-1, 3).astype(int)
        want = np.array([colour.red(), colour.green(), colour.blue()])
        assert np.abs(column - want).sum(axis=1).min() < 40, f"no {status.level} mark at x={x} for {status.target}"
    gauge.set_fps(70.0)
    assert all(s.met for s in gauge.statuses)
    assert gauge.bar_color() == LEVEL_COLORS[Level.MET]


def test_fps_gauge_shows_what_the_detector_alone_could_do(qtbot):
    gauge = FpsGauge()
    qtbot.addWidget(gauge)
    gauge.resize(300, 64)
    gauge.set_fps(10.0)  # a 10 fps file, paced: the display cannot show more
    gauge.set_capacity(45.0)  # ...but the detector would keep up with a 30 fps source
    assert gauge.capacity == 45.0 and "45.0 fps" in gauge.toolTip()
    image = grab(gauge)
    x = round(gauge.width() * 45.0 / gauge.scale_max())
    assert (image[36:41, x - 1 : x + 2] > 240).all(axis=2).any(), "no white capacity tick"
    gauge.set_capacity(1000.0)  # a fast GPU: the scale stops at 240 so the targets stay readable
    assert gauge.scale_max() == gauge.SCALE_LIMIT
    gauge.set_capacity(None)
    assert gauge.capacity is None


def test_stage_bar_scale_grows_with_a_slow_frame(qtbot):
    bar = StageBar()
    qtbot.addWidget(bar)
    bar.set_times(backbone=10.0, rpn=2.0, roi_heads=3.0, other=1.0)
    assert bar.total == pytest.approx(16.0)
    assert bar.scale_max() == pytest.approx(40.0)  # the 33 ms budget + 20 %
    bar.set_times(backbone=300.0, rpn=20.0, roi_heads=120.0, other=10.0)
    assert bar.scale_max() == 500.0
    bar.grab()  # paints without error


def test_proposal_slider_is_log_scale_and_round_trips():
    for n in (1, 50, 100, 300, 1000, 2000):
        assert position_to_proposals(proposals_to_position(n)) == pytest.approx(n, rel=0.01)
    # 50 and 1000 are both far from the ends: both are easy to hit with a mouse.
    assert 400 < proposals_to_position(50) < 600 < proposals_to_position(1000) < 950


def test_proposal_control_presets_slider_and_spin(qtbot):
    control = ProposalControl(300)
    qtbot.addWidget(control)
    seen = []
    control.value_changed.connect(seen.append)
    assert control.preset_buttons[300].isChecked()
    qtbot.mouseClick(control.preset_buttons[50], Qt.MouseButton.LeftButton)
    assert control.value() == 50 and control.spin.value() == 50 and seen == [50]
    assert control.preset_buttons[50].isChecked() and not control.preset_buttons[300].isChecked()
    control.slider.setValue(proposals_to_position(1000))
    assert control.value() == pytest.approx(1000, rel=0.01) and seen[-1] == control.value()
    control.spin.setValue(123)
    assert control.value() == 123 and seen[-1] == 123
    assert set(PROPOSAL_PRESETS) == {50, 100, 300, 1000}


def test_threshold_control(qtbot):
    control = ThresholdControl(0.5)
    qtbot.addWidget(control)
    seen = []
    control.value_changed.connect(seen.append)
    control.slider.setValue(25)
    assert control.value() == 0.25 and control.spin.value() == pytest.approx(0.25) and seen == [0.25]


def test_class_checklist_emits_the_selection(qtbot):
    checklist = ClassChecklist(["person", "car", "dog"])
    qtbot.addWidget(checklist)
    seen = []
    checklist.classes_changed.connect(seen.append)
    assert checklist.selection() == ()  # all checked = no filter
    checklist.list.item(1).setCheckState(Qt.CheckState.Unchecked)
    assert seen == [("person", "dog")]
    checklist.filter_edit.setText("per")
    assert checklist.list.item(2).isHidden() and not checklist.list.item(0).isHidden()
    qtbot.mouseClick(checklist.none_button, Qt.MouseButton.LeftButton)  # None acts on the rows shown
    assert seen[-1] == ("dog",)
    checklist.filter_edit.clear()
    qtbot.mouseClick(checklist.none_button, Qt.MouseButton.LeftButton)
    assert checklist.checked() == [] and seen[-1] == () and "none checked" in checklist.summary.text()
    qtbot.mouseClick(checklist.all_button, Qt.MouseButton.LeftButton)
    assert checklist.checked() == ["person", "car", "dog"] and "all 3" in checklist.summary.text()


def test_bridge_keeps_only_the_newest_item(qtbot):
    bridge = FrameBridge()
    notified = []
    bridge.frame_available.connect(lambda: notified.append(1))
    for i in range(5):
        bridge.push(i)
    assert notified == [1]  # one notification for five pushes: no queue of events
    assert bridge.take_all() == {None: 4} and bridge.replaced == 4
    assert bridge.take_all() == {}
    bridge.push(5)
    assert notified == [1, 1]


def test_rgb_to_qimage_shares_the_buffer():
    frame = np.zeros((4, 6, 3), np.uint8)
    image = rgb_to_qimage(frame)
    frame[1, 2] = (10, 200, 30)  # no copy: the image sees the change
    assert image.pixelColor(2, 1).getRgb()[:3] == (10, 200, 30)
    sliced = np.zeros((4, 12, 3), np.uint8)[:, ::2]  # not contiguous: copied once, still right
    sliced[0, 0] = (1, 2, 3)
    assert rgb_to_qimage(sliced).pixelColor(0, 0).getRgb()[:3] == (1, 2, 3)
    with pytest.raises(ValueError, match="uint8 RGB"):
        rgb_to_qimage(np.zeros((4, 6), np.uint8))


def test_video_view_draws_boxes_where_they_are(qtbot):
    view = VideoView()
    qtbot.addWidget(view)
    view.resize(200, 150)
    frame = np.full((120, 160, 3), 90, np.uint8)
    names = ("__background__", "person")
    dets = Detections(np.array([[40, 30, 120, 100]], np.float32), np.array([0.9], np.float32), np.array([1]), names)
    view.set_frame(rgb_to_qimage(frame), Detections.empty(names))
    plain = grab(view)
    view.set_frame(rgb_to_qimage(frame), dets)
    boxed = grab(view)
    rect = view.image_rect()
    scale = rect.width() / 160
    # On the box's left edge the pixels changed; in the box's middle they did not.
    x_edge, y_mid = round(rect.left() + 40 * scale), round(rect.top() + 80 * scale)
    assert np.abs(boxed[y_mid, x_edge - 1 : x_edge + 2].astype(int) - plain[y_mid, x_edge - 1 : x_edge + 2]).max() > 50
    x_in = round(rect.left() + 80 * scale)
    assert np.array_equal(boxed[y_mid, x_in], plain[y_mid, x_in])
    shot = view.annotated_image()
    assert (shot.width(), shot.height()) == (160, 120)
    assert shot.pixelColor(40, 60).getRgb()[:3] != (90, 90, 90)
