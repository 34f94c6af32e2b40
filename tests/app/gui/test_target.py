"""The target-fps selector: off / 30 / 60 / custom. (That the target reaches a running pipeline is
tested with the window, in test_main_window.py.)"""

from __future__ import annotations

from app.gui.target import TargetControl


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
    control.set_target(24.0)  # a target set elsewhere (--target-fps) is shown, not sent back
    assert control.combo.currentText() == "custom" and control.spin.value() == 24 and seen[-1] is None


def test_a_target_above_240_from_the_command_line_is_shown_as_it_is(qtbot):
    """--target-fps accepts up to 1000: the selector shows 500, not the spin box's old limit of 240
    (picking "custom" again would have sent 240 to the pipeline)."""
    control = TargetControl()
    qtbot.addWidget(control)
    seen = []
    control.target_changed.connect(seen.append)
    control.set_target(500.0)
    assert control.combo.currentText() == "custom" and control.spin.value() == 500 and seen == []
    control.combo.setCurrentText("off")
    control.combo.setCurrentText("custom")
    assert seen == [None, 500.0]
