"""The target-fps selector: off / 30 / 60 / custom reaches the running pipeline's controller, the
proposal slider yields to the controller while a target is set, and the status says what it chose."""

from __future__ import annotations

import pytest

from app.config import PipelineConfig
from app.gui.main_window import MainWindow
from app.gui.target import TargetControl

WAIT_MS = 30_000


def test_the_selector_emits_none_30_60_and_custom(qtbot):
    control = TargetControl()
    qtbot.addWidget(control)
    seen = []
    control.target_changed.connect(seen.append)
    control.combo.setCurrentIndex(1)
    control.combo.setCurrentIndex(2)
    control.combo.setCurrentIndex(3)
    control.spin.setValue(42)
    control.combo.setCurrentIndex(0)
    assert seen == [30.0, 60.0, 15.0, 42.0, None]
    assert not control.spin.isEnabled()
    control.set_target(24.0)
    assert control.combo.currentText() == "custom" and control.spin.value() == 24 and seen[-1] == 24.0


@pytest.fixture
def window(qtbot, gui_detector, tmp_path):
    win = MainWindow(gui_detector, output_dir=tmp_path, pace_files=False)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()
    gui_detector.set_input_size(gui_detector.base_input_size)


def test_a_target_reaches_the_pipeline_and_the_status_shows_the_choice(qtbot, window, gui_detector, clip10):
    window.target_control.set_target(200.0)  # far above what a CPU does: the controller must lower the cost
    assert not window.proposal_control.isEnabled()
    window.open_source(PipelineConfig(source_kind="video", source=str(clip10)))
    qtbot.waitUntil(lambda: window.last_stats is not None and window.last_stats.finished, timeout=WAIT_MS)
    adapt = window.last_stats.adapt
    assert adapt is not None and adapt.target_fps == 200.0
    assert window.last_stats.frames_written == 10  # a file loses no frame to the controller
    assert adapt.changes >= 1 and "proposals" in window.target_control.status.text()
    window.target_control.set_target(None)
    assert window.proposal_control.isEnabled()
    qtbot.waitUntil(lambda: window.controller.target_fps is None, timeout=WAIT_MS)
