"""The status and control widgets of the side panel: ``FpsGauge`` (fps against the 30/60 targets),
``StageBar`` (ms per stage against their 33/17 ms budgets), and the live detector knobs
``ProposalControl``, ``ThresholdControl``, ``ClassChecklist``. They only show and emit; they never
talk to the pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from PyQt6.QtCore import QRectF, QSignalBlocker, QSize, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPen
from PyQt6.QtWidgets import (
    QBoxLayout,
    QDoubleSpinBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.fps_meter import TARGETS, Level, TargetStatus, target_status

LEVEL_COLORS = {
    Level.MET: QColor(46, 204, 113),
    Level.NEAR: QColor(241, 196, 15),
    Level.MISSED: QColor(231, 76, 60),
}
TRACK = QColor(58, 62, 70)
TEXT = QColor(230, 232, 236)
MUTED = QColor(150, 156, 166)

STAGE_COLORS = {
    "backbone": QColor(52, 152, 219),
    "rpn": QColor(230, 126, 34),
    "roi_heads": QColor(155, 89, 182),
    "other": QColor(127, 140, 141),
}
STAGE_LABELS = {"backbone": "backbone", "rpn": "RPN", "roi_heads": "RoI head", "other": "pre/post"}

PROPOSAL_PRESETS = (50, 100, 300, 1000)
PROPOSAL_MIN, PROPOSAL_MAX = 1, 2000


def box(layout: QBoxLayout, *items, margins: tuple[int, int, int, int] = (0, 0, 0, 0)) -> QBoxLayout:
    """``layout`` (a new ``QHBoxLayout`` or ``QVBoxLayout``) holding ``items`` in order — a widget or a
    layout, ``(widget, stretch)``, or an int: a stretch — with ``margins`` (none by default)."""
    layout.setContentsMargins(*margins)
    for item in items:
        item, stretch = item if isinstance(item, tuple) else (item, 0)
        if isinstance(item, int):
            layout.addStretch(item)
        elif isinstance(item, QLayout):
            layout.addLayout(item, stretch)
        else:
            layout.addWidget(item, stretch)
    return layout


def button(text: str, tip: str = "", checkable: bool = False) -> QPushButton:
    """A push button that does not take the keyboard focus (the window's shortcuts keep it)."""
    return QPushButton(text, focusPolicy=Qt.FocusPolicy.NoFocus, toolTip=tip, checkable=checkable)


def muted_label(text: str = "", wrap: bool = False) -> QLabel:
    """A small grey note (the style sheet's ``#muted``)."""
    return QLabel(text, objectName="muted", wordWrap=wrap)


def set_font(painter: QPainter, px: float, bold: bool | None = None,
             base: QFont | None = None) -> QFontMetricsF:
    """The painter's font (or ``base``) at ``px`` pixels (at least 8), made bold or not when ``bold``
    is given (else its weight stays: a group box's style sheet may set it); returns its metrics."""
    font = QFont(painter.font() if base is None else base)
    font.setPixelSize(max(8, round(px)))
    if bold is not None:
        font.setBold(bold)
    painter.setFont(font)
    return QFontMetricsF(font)


def set_checked_quietly(on: bool, *widgets) -> None:
    """Check or uncheck ``widgets`` without their signals (the state was changed elsewhere)."""
    for widget in widgets:
        with QSignalBlocker(widget):
            widget.setChecked(on)


class FpsGauge(QWidget):
    """A horizontal bar 0…scale fps with the target marks; ``set_fps`` from the GUI thread.

    The bar is the measured display rate; each target's mark is green when met, amber when near,
    red when missed. ``set_capacity`` adds a white tick for what the detector alone could do (1000 /
    its ms per frame): a file paced at 10 fps shows 10, and the tick says whether the detector
    would keep up with a 30 or 60 fps source.
    """

    SCALE_LIMIT = 240.0  # beyond this the bar would squeeze the targets into its left end

    def __init__(self, targets: Sequence[float] = TARGETS, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.targets = tuple(sorted(float(t) for t in targets))
        self.fps = 0.0
        self.capacity: float | None = None  # the detector-alone rate (None = unknown)
        self.statuses: list[TargetStatus] = [target_status(0.0, t) for t in self.targets]
        self.setMinimumHeight(64)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_fps(self, fps: float) -> None:
        self.fps = max(0.0, float(fps))
        self.statuses = [target_status(self.fps, t) for t in self.targets]
        self._refresh()

    def set_capacity(self, fps: float | None) -> None:
        """The detector-alone rate (None = unknown)."""
        self.capacity = float(fps) if fps and math.isfinite(fps) and fps > 0 else None
        self._refresh()

    def _refresh(self) -> None:
        lines = ["display rate: " + " · ".join(s.text for s in self.statuses)]
        if self.capacity is not None:
            lines.append(f"the detector alone: {self.capacity:.1f} fps (1000 / its ms per frame)")
        self.setToolTip("\n".join(lines))
        self.update()

    def scale_max(self) -> float:
        """The bar's full scale: the top target + 25 %, growing in steps of 30 beyond it (≤ 240)."""
        top = self.targets[-1] * 1.25 if self.targets else 75.0
        highest = max(self.fps, self.capacity or 0.0)
        return min(max(top, math.ceil(highest * 1.1 / 30.0) * 30.0), max(top, self.SCALE_LIMIT))

    def bar_color(self) -> QColor:
        """Green when every target is met, else the colour of the lowest target's level."""
        if all(s.met for s in self.statuses):  # (none: no target to miss)
            return LEVEL_COLORS[Level.MET]
        if self.statuses[0].met:  # 30 met, 60 not: still good for most uses
            return QColor(39, 174, 96).darker(115)
        return LEVEL_COLORS[self.statuses[0].level]

    def sizeHint(self) -> QSize:
        return QSize(260, 64)

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        w = self.width()
        set_font(p, 20, bold=True)
        p.setPen(TEXT)
        p.drawText(QRectF(0, 0, w, 26), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, f"{self.fps:5.1f} fps")
        set_font(p, 11, base=self.font())
        p.setPen(MUTED)
        note = "shown, 1 s window"
        if self.capacity is not None:
            note = f"detector alone: {self.capacity:.{1 if self.capacity < 10 else 0}f} fps"
        p.drawText(QRectF(0, 0, w, 26), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, note)

        track = QRectF(0, 32, w, 12)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(TRACK)
        p.drawRoundedRect(track, 4, 4)
        full = self.scale_max()
        fill = QRectF(track.left(), track.top(), track.width() * min(1.0, self.fps / full), track.height())
        p.setBrush(self.bar_color())
        p.drawRoundedRect(fill, 4, 4)
        for status in self.statuses:
            x = track.left() + track.width() * status.target / full
            p.setPen(QPen(LEVEL_COLORS[status.level], 2.5))
            p.drawLine(int(x), int(track.top()) - 3, int(x), int(track.bottom()) + 3)
            p.drawText(QRectF(x - 40, track.bottom() + 3, 80, 16), Qt.AlignmentFlag.AlignCenter, status.text)
        if self.capacity is not None:  # a white tick: what the detector alone could sustain
            x = track.left() + track.width() * min(1.0, self.capacity / full)
            x = min(max(x, track.left() + 2), track.right() - 2)
            p.setPen(QPen(QColor(255, 255, 255), 2.0))
            p.drawLine(int(x), int(track.top()) + 1, int(x), int(track.bottom()) - 1)
        p.end()


class StageBar(QWidget):
    """Per-frame milliseconds stacked by stage, with the 30/60 fps frame budgets marked."""

    STAGES = ("backbone", "rpn", "roi_heads", "other")

    def __init__(self, targets: Sequence[float] = TARGETS, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.budgets_ms = tuple(sorted(1000.0 / t for t in targets))
        self._ms = dict.fromkeys(self.STAGES, 0.0)
        self.setMinimumHeight(72)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    @property
    def total(self) -> float:
        return sum(self._ms.values())

    def set_times(self, backbone: float, rpn: float, roi_heads: float, other: float = 0.0) -> None:
        self._ms = {k: max(0.0, v) for k, v in zip(self.STAGES, (backbone, rpn, roi_heads, other), strict=True)}
        self.setToolTip("\n".join(f"{STAGE_LABELS[k]}: {v:.1f} ms" for k, v in self._ms.items()))
        self.update()

    def scale_max(self) -> float:
        """Full scale in ms: the slowest budget + 20 %, or a round 1/2/5 × 10^k above a slower frame."""
        top = max(self.budgets_ms) * 1.2 if self.budgets_ms else 40.0
        total = self.total
        if total <= top:
            return top
        k = 10 ** math.floor(math.log10(total))
        return next(m * k for m in (1, 2, 5, 10) if m * k >= total)

    def sizeHint(self) -> QSize:
        return QSize(260, 72)

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        w = self.width()
        set_font(p, 11)
        p.setPen(TEXT)
        p.drawText(QRectF(0, 0, w, 16), Qt.AlignmentFlag.AlignLeft, f"detector {self.total:.1f} ms / frame")
        if self.budgets_ms:
            p.setPen(MUTED)
            budgets = " · ".join(f"{b:.0f}" for b in sorted(self.budgets_ms, reverse=True))
            p.drawText(QRectF(0, 0, w, 16), Qt.AlignmentFlag.AlignRight, f"┆ budgets {budgets} ms")
        track = QRectF(0, 20, w, 12)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(TRACK)
        p.drawRect(track)
        full = self.scale_max()
        x = track.left()
        for stage in self.STAGES:
            seg = min(track.width() * self._ms[stage] / full, track.right() - x)
            if seg > 0:
                p.setBrush(STAGE_COLORS[stage])
                p.drawRect(QRectF(x, track.top(), seg, track.height()))
                x += seg
        p.setPen(QPen(QColor(255, 255, 255, 210), 1.5, Qt.PenStyle.DashLine))
        for budget in self.budgets_ms:  # the 30 and 60 fps frame budgets as dashed marks
            bx = track.left() + track.width() * budget / full
            if bx <= track.right():
                p.drawLine(int(bx), int(track.top()) - 3, int(bx), int(track.bottom()) + 3)
        # Legend: two columns of a coloured square and the milliseconds of each stage.
        col_w = w / 2
        for i, stage in enumerate(self.STAGES):
            lx, ly = (i % 2) * col_w, track.bottom() + 6 + (i // 2) * 16
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(STAGE_COLORS[stage])
            p.drawRect(QRectF(lx, ly + 3, 8, 8))
            p.setPen(TEXT)
            p.drawText(QRectF(lx + 12, ly, col_w - 14, 14), Qt.AlignmentFlag.AlignLeft,
                       f"{STAGE_LABELS[stage]} {self._ms[stage]:.1f} ms")
        p.end()


def proposals_to_position(n: int, steps: int = 1000) -> int:
    """Slider position for a proposal count (log scale, so 50 and 1000 are both easy to hit)."""
    n = min(max(int(n), PROPOSAL_MIN), PROPOSAL_MAX)
    return round(steps * math.log(n / PROPOSAL_MIN) / math.log(PROPOSAL_MAX / PROPOSAL_MIN))


def position_to_proposals(position: int, steps: int = 1000) -> int:
    value = PROPOSAL_MIN * (PROPOSAL_MAX / PROPOSAL_MIN) ** (position / steps)
    return min(max(round(value), PROPOSAL_MIN), PROPOSAL_MAX)


class _SliderSpin(QWidget):
    """A slider and a spin box on one value, each following the other; ``value_changed`` is emitted
    once per distinct value, whichever moved. Subclasses clamp the value and map it to positions."""

    def _setup(self, value, spin: QSpinBox | QDoubleSpinBox, steps: int, tip: str) -> None:
        self._value = value
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, steps)
        self.slider.setToolTip(tip)
        self.spin = spin
        self.slider.valueChanged.connect(lambda pos: self.set_value(self._from_slider(pos), from_slider=True))
        self.spin.valueChanged.connect(self.set_value)

    def value(self):
        return self._value

    def set_value(self, value, from_slider: bool = False) -> None:
        old, self._value = self._value, self._clamp(value)
        self._show(self._value, from_slider)
        if self._value != old:
            self.value_changed.emit(self._value)

    def _show(self, value, from_slider: bool = False) -> None:
        with QSignalBlocker(self.spin):
            self.spin.setValue(value)
        if not from_slider:  # moving the slider under the user's hand would make it jump
            with QSignalBlocker(self.slider):
                self.slider.setValue(self._to_slider(value))


class ProposalControl(_SliderSpin):
    """RPN proposals kept per frame: a log-scale slider, an exact spin box and presets.

    Signal: ``value_changed(int)`` once per distinct value, whichever control moved.
    """

    value_changed = pyqtSignal(int)
    _to_slider = staticmethod(proposals_to_position)
    _from_slider = staticmethod(position_to_proposals)
    _clamp = staticmethod(lambda n: min(max(int(n), PROPOSAL_MIN), PROPOSAL_MAX))

    def __init__(self, value: int = 300, presets: Sequence[int] = PROPOSAL_PRESETS, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        spin = QSpinBox()
        spin.setRange(PROPOSAL_MIN, PROPOSAL_MAX)
        spin.setAccelerated(True)
        spin.setToolTip("RPN proposals kept per frame")
        self._setup(int(value), spin, 1000, "RPN proposals kept per frame (log scale)")
        self.preset_buttons = {n: button(str(n), f"keep {n} proposals", checkable=True) for n in presets}
        for n, b in self.preset_buttons.items():
            b.clicked.connect(lambda _checked=False, n=n: self.set_value(n))
        presets_row = box(QHBoxLayout(), *self.preset_buttons.values())
        presets_row.setSpacing(4)
        box(QVBoxLayout(self), box(QHBoxLayout(), (self.slider, 1), self.spin), presets_row)
        self._show(self._value)

    def _show(self, n: int, from_slider: bool = False) -> None:
        super()._show(n, from_slider)
        for preset, b in self.preset_buttons.items():
            b.setChecked(preset == n)


class ThresholdControl(_SliderSpin):
    """Score threshold 0…1: a slider in steps of 0.01 and a spin box. Signal ``value_changed(float)``."""

    value_changed = pyqtSignal(float)
    _to_slider = staticmethod(lambda value: round(value * 100))
    _from_slider = staticmethod(lambda position: position / 100.0)
    _clamp = staticmethod(lambda value: min(max(round(float(value), 2), 0.0), 1.0))

    def __init__(self, value: float = 0.5, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        spin = QDoubleSpinBox()
        spin.setRange(0.0, 1.0)
        spin.setDecimals(2)
        spin.setSingleStep(0.05)
        self._setup(round(float(value), 2), spin, 100, "detections scoring below this are hidden")
        box(QHBoxLayout(self), (self.slider, 1), self.spin)
        self._show(self._value)


class ClassChecklist(QWidget):
    """Which classes to show: a filterable checklist with All / None.

    Signal ``classes_changed(tuple)``: the checked names, or () when all are checked (= no filter).
    Nothing checked also means no filter — the detector has no "show nothing" setting — and the
    summary line says so.
    """

    classes_changed = pyqtSignal(tuple)

    def __init__(self, names: Sequence[str] = (), checked: Sequence[str] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("filter classes…")
        self.filter_edit.setClearButtonEnabled(True)
        self.list = QListWidget()
        self.list.setUniformItemSizes(True)
        self.list.setMinimumHeight(60)
        self.summary = muted_label()
        self.all_button, self.none_button = button("All"), button("None")
        self.all_button.clicked.connect(lambda: self._set_all(True))
        self.none_button.clicked.connect(lambda: self._set_all(False))
        top = box(QHBoxLayout(), (self.filter_edit, 1), self.all_button, self.none_button)
        box(QVBoxLayout(self), top, (self.list, 1), self.summary)
        self.filter_edit.textChanged.connect(self._apply_filter)
        self.list.itemChanged.connect(lambda _item: self._emit())
        self.set_names(names, checked)

    def set_names(self, names: Sequence[str], checked: Sequence[str] = ()) -> None:
        chosen = set(checked)
        with QSignalBlocker(self.list):
            self.list.clear()
            for name in names:
                item = QListWidgetItem(name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                on = not chosen or name in chosen
                item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
                self.list.addItem(item)
        self._last = self.selection()
        self._update_summary()

    def checked(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())
                if self.list.item(i).checkState() == Qt.CheckState.Checked]

    def selection(self) -> tuple[str, ...]:
        """What the detector should keep: () for all."""
        checked = self.checked()
        return () if len(checked) in (0, self.list.count()) else tuple(checked)

    def _set_all(self, on: bool) -> None:
        with QSignalBlocker(self.list):
            for i in range(self.list.count()):
                item = self.list.item(i)
                if not item.isHidden():
                    item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
        self._emit()

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        for i in range(self.list.count()):
            item = self.list.item(i)
            item.setHidden(bool(needle) and needle not in item.text().lower())

    def _emit(self) -> None:
        self._update_summary()
        selection = self.selection()
        if selection != self._last:
            self._last = selection
            self.classes_changed.emit(selection)

    def _update_summary(self) -> None:
        n, total = len(self.checked()), self.list.count()
        self.summary.setText(f"showing all {total} classes" if n == total else
                             "none checked — showing all classes" if n == 0 else f"showing {n} of {total} classes")


def available_precisions(device: torch.device, int8: bool = False) -> list[str]:
    """The precisions worth offering on ``device`` (fp16 has no fast kernels on the CPU; int8 is a
    CPU path, offered when the detector has calibration frames)."""
    if device.type == "cuda":
        return ["fp32", "fp16", "bf16"] if torch.cuda.is_bf16_supported() else ["fp32", "fp16"]
    return ["fp32", "bf16"] + (["int8"] if int8 else [])


class Banner(QFrame):
    """A coloured one-line message over the video, with a close button."""

    def __init__(self, kind: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(f"banner-{kind}")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton(text="✕", autoRaise=True, focusPolicy=Qt.FocusPolicy.NoFocus, clicked=self.hide)
        layout = box(QHBoxLayout(self), (self.label, 1), margins=(10, 6, 6, 6))
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_message(self, text: str) -> None:
        self.label.setText(text)
        self.show()
