"""The window's controls, built here so that ``main_window.py`` holds the behaviour: the side panel
(performance, detector knobs, tracking, events, classes) and the transport strip under the video.
Widgets only show and emit; the window wires them to its controller."""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.gui.events_panel import EventsPanel
from app.gui.performance import PerformancePanel
from app.gui.target import TargetControl
from app.gui.tracking import TrackingPanel
from app.gui.widgets import ClassChecklist, ProposalControl, ThresholdControl, available_precisions, box, button
from detector.detections import valid_names

PANEL_WIDTH = 330


def model_text(detector) -> str:
    """The status bar's model line: name (untrained) · device · precision."""
    info = getattr(detector, "info", None)
    name = getattr(info, "name", "model")
    trained = "" if getattr(info, "trained", True) else " (untrained)"
    return f"{name}{trained} · {detector.device.type} · {detector.precision}"


class ControlPanel(QScrollArea):
    """The side panel, scrollable, of a fixed width; its controls start from ``detector``'s knobs."""

    def __init__(self, detector, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        panel = QWidget()
        panel.setObjectName("panel")
        self.performance = PerformancePanel()

        knobs = QGroupBox("Detector")
        form = QFormLayout(knobs)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.proposal_control = ProposalControl(detector.proposal_count)
        self.threshold_control = ThresholdControl(detector.score_threshold)
        self.precision_combo = combo = QComboBox()
        precisions = available_precisions(detector.device, getattr(detector, "int8_available", False))
        combo.addItems(list(dict.fromkeys([*precisions, detector.precision])))  # and the running one
        combo.setCurrentText(detector.precision)
        combo.setToolTip(f"compute precision on {detector.device.type} (autocast; weights stay fp32)")
        combo.setEnabled(hasattr(detector, "set_precision"))
        self.proposals_seen = QLabel("", objectName="muted")
        self.target_control = TargetControl(owns=(self.proposal_control,))  # the controller's knobs while on
        for row in (("Proposals", self.proposal_control), ("", self.proposals_seen),
                    ("Score ≥", self.threshold_control), ("Precision", combo), ("Target", self.target_control)):
            form.addRow(*row)

        self.tracking_panel = TrackingPanel()
        self.events_panel = EventsPanel()  # the list, the heat-map toggle and the alert outputs (issue #22)
        self.class_list = ClassChecklist(valid_names(detector.class_names), detector.classes)
        panels = {"Tracking": self.tracking_panel, "Events": self.events_panel, "Classes": self.class_list}
        tracking, events, classes = (QGroupBox(title) for title in panels)
        for group, widget in zip((tracking, events, classes), panels.values(), strict=True):
            QVBoxLayout(group).addWidget(widget)
        box(QVBoxLayout(panel), self.performance, knobs, tracking, events, (classes, 1),
            margins=(10, 10, 10, 10)).setSpacing(10)

        self.setWidget(panel)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFixedWidth(PANEL_WIDTH)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Expanding)


class ControlStrip(QFrame):
    """Open / pause / record / screenshot under the video, like a player's transport bar."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("strip")
        self.open_button = button("Open…", "open a video file (Ctrl+O); cameras and streams are in the File menu")
        self.pause_button = button("❚❚ Pause", "pause / resume every stream (Space)", checkable=True)
        self.record_button = button("● Record", "record every stream's annotated video to a timestamped "
                                    "file (R)", checkable=True)
        self.record_button.setObjectName("record")
        self.screenshot_button = button("Screenshot", "save the frame in focus with its boxes as PNG (S)")
        box(QHBoxLayout(self), self.open_button, 1, self.pause_button, self.record_button, self.screenshot_button,
            margins=(8, 6, 8, 6))
