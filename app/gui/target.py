"""The window's target-fps selector and the adaptive controller's status.

Off / 30 / 60 / custom: with a target set, the controller (``app.pipeline.adapt``) owns the input size and
the proposal count (and the frame skip of a live source) and says here what it chose and why.
Widgets only show and emit; the ``PipelineController`` hands the target to the pipeline.
"""

from __future__ import annotations

from PyQt6.QtCore import QSignalBlocker, pyqtSignal
from PyQt6.QtWidgets import QComboBox, QHBoxLayout, QSpinBox, QVBoxLayout, QWidget

from app.gui.widgets import box, muted_label

CHOICES = ("off", "30 fps", "60 fps", "custom")


class TargetControl(QWidget):
    """Signal ``target_changed(object)``: a float (frames per second) or None (off).

    ``owns``: widgets the controller takes over while a target is set (the proposal slider); they
    are disabled then, so a hand on them does not fight the controller."""

    target_changed = pyqtSignal(object)

    def __init__(self, parent: QWidget | None = None, owns: tuple[QWidget, ...] = ()) -> None:
        super().__init__(parent)
        self.owns = tuple(owns)
        self.combo = QComboBox()
        self.combo.addItems(CHOICES)
        self.combo.setToolTip("hold this rate by lowering or raising the input size and the proposal count\n"
                              "(and, for a camera or stream, skipping frames); files never lose a frame")
        self.spin = QSpinBox()
        self.spin.setRange(1, 1000)  # as --target-fps (app.pipeline.adapt.AdaptConfig)
        self.spin.setSuffix(" fps")
        self.spin.setValue(15)
        self.status = muted_label(wrap=True)
        box(QVBoxLayout(self), box(QHBoxLayout(), (self.combo, 1), self.spin), self.status)
        self._target: float | None = None
        self._chosen = False  # the user has picked a target here (then nothing else overrides it)
        self.combo.currentIndexChanged.connect(lambda _i: self._emit())
        self.spin.valueChanged.connect(lambda _v: self._emit())
        self._sync()

    def set_target(self, fps: float | None) -> None:
        """Show a target set elsewhere (``--target-fps``); it is not sent back."""
        index = {None: 0, 30.0: 1, 60.0: 2}.get(None if fps is None else float(fps), 3)  # 3: custom
        with QSignalBlocker(self.combo), QSignalBlocker(self.spin):
            self.combo.setCurrentIndex(index)
            if index == 3:
                self.spin.setValue(max(1, round(float(fps))))
        self._target = self._read()
        self._sync()

    def _read(self) -> float | None:
        return {0: None, 1: 30.0, 2: 60.0}.get(self.combo.currentIndex(), float(self.spin.value()))

    def _sync(self) -> None:
        self.spin.setEnabled(self.combo.currentIndex() == 3)
        for widget in self.owns:
            widget.setEnabled(self._target is None)
        if self._target is None:
            self.status.setText("off: input size and proposals as set")

    def _emit(self) -> None:
        self._chosen = True
        old, self._target = self._target, self._read()
        self._sync()
        if self._target != old:
            self.target_changed.emit(self._target)

    def show_status(self, adapt) -> None:
        """Show an ``app.pipeline.adapt.AdaptStatus`` (or None: no pipeline, or off). A target set elsewhere
        (``--target-fps`` with the window) is adopted by the selector."""
        if adapt is None or adapt.target_fps is None or adapt.setting is None:
            self._sync()
            return
        if self._target is None and not self._chosen:
            self.set_target(adapt.target_fps)
        fps = f"{adapt.measured_fps:.1f} fps" if adapt.measured_fps else "-- fps"
        self.status.setText(f"{adapt.setting.describe()} · {fps}\n{adapt.state}: {adapt.reason}")
