"""The window's events panel: the list of events (time, kind, class, a thumbnail; Enter or a
double-click opens the event's clip in the system's player), the heat-map toggle, and which alert
outputs are on with their sent / retried / dropped counters.

It lives on the GUI thread and hears from ``app.gui.events_feed.EventFeed`` by queued signals.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QSize, Qt, QUrl
from PyQt6.QtGui import QDesktopServices, QIcon, QPixmap
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.gui.bridge import rgb_to_qimage
from app.gui.events_feed import THUMB_PX, EventFeed, OutputState, WindowEvent
from app.gui.widgets import box, button, muted_label

MAX_ROWS = 500  # the list keeps the latest events; older rows (and their thumbnails) are dropped
CLIP_ROLE = Qt.ItemDataRole.UserRole
RECORD_ROLE = Qt.ItemDataRole.UserRole + 1  # the event's record (a dict)


def describe(record: dict) -> str:
    """A list row's text: ``12.30 s  line 1 in · person #4``."""
    where = record.get("line") or record.get("zone") or record.get("kind", "")
    who = str(record.get("class", "?")) + (f" #{record['track_id']}" if record.get("track_id") is not None else "")
    return f"{float(record.get('time_s', 0.0)):7.2f} s  {where} {record.get('event', '')} · {who}"


class EventsPanel(QWidget):
    """Events list, heat-map toggle and alert outputs; the window and the tests read ``list``,
    ``heat_check``, ``outputs_label``, ``counts`` (a Counter of (kind, event)) and ``opened`` (the
    last URL given to the system's player)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.heat = None  # app.analytics.heatmap.Heat of the running pipeline
        self.counts: Counter = Counter()
        self.opened: QUrl | None = None
        self.summary_label = muted_label("no events yet", wrap=True)
        self.list = QListWidget()
        self.list.setIconSize(QSize(THUMB_PX, THUMB_PX))
        self.list.setMinimumHeight(160)
        self.list.setUniformItemSizes(True)
        self.list.setToolTip("Enter or double-click: play the event's clip (with --event-clips)")
        self.heat_check = QCheckBox("Heat map over the video")
        self.heat_check.setToolTip("where tracked objects stood (their feet), over the live video")
        self.clear_button = button("Clear list")
        self.outputs_label = muted_label(wrap=True)
        self.outputs_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box(QVBoxLayout(self), self.summary_label, (self.list, 1),
            box(QHBoxLayout(), (self.heat_check, 1), self.clear_button), self.outputs_label)
        self.list.itemActivated.connect(self.open_clip)
        self.clear_button.clicked.connect(self.clear)
        self.show_outputs([])

    def connect_feed(self, feed: EventFeed) -> None:
        queued = Qt.ConnectionType.QueuedConnection
        feed.event_ready.connect(self.add_event, queued)
        feed.heat_changed.connect(self.set_heat, queued)
        feed.outputs_changed.connect(self.show_outputs, queued)

    # ------------------------------------------------------------------ from the feed
    def add_event(self, event: WindowEvent) -> None:
        r = event.record
        item = QListWidgetItem(describe(r))
        if event.thumb is not None:
            item.setIcon(QIcon(QPixmap.fromImage(rgb_to_qimage(event.thumb).copy())))
        clip = r.get("clip")
        item.setData(CLIP_ROLE, clip)
        item.setData(RECORD_ROLE, r)
        item.setToolTip(f"{r.get('stream', '')} frame {r.get('frame')} · score {r.get('score')}\n"
                        + (f"clip: {clip} (Enter plays it)" if clip else "no clip (run with --event-clips DIR)"))
        at_end = self.list.verticalScrollBar().value() >= self.list.verticalScrollBar().maximum() - 2
        reading = None if at_end else self.list.itemAt(4, 4)  # the row at the top, scrolled up to
        self.list.addItem(item)
        while self.list.count() > MAX_ROWS:
            self.list.takeItem(0)
        if at_end:
            self.list.scrollToBottom()
        elif reading is not None and self.list.row(reading) >= 0:  # it stays put as older rows go
            self.list.scrollToItem(reading, QAbstractItemView.ScrollHint.PositionAtTop)
        self.counts[(r.get("kind"), r.get("event"))] += 1
        total = sum(self.counts.values())
        parts = ", ".join(f"{k} {e} {n}" for (k, e), n in sorted(self.counts.items(), key=str))
        self.summary_label.setText(f"{total} event{'s' if total != 1 else ''}: {parts}")

    def set_heat(self, heat) -> None:
        self.heat = heat

    def show_outputs(self, states: list[OutputState]) -> None:
        lines = [s.line() for s in states] or ["events file: off", "clips: off", "MQTT: off", "webhook: off"]
        self.outputs_label.setText("Alert outputs\n" + "\n".join(lines))

    # ------------------------------------------------------------------ user actions
    def open_clip(self, item: QListWidgetItem) -> None:
        """Play the row's clip with the system's player (the file may still be being written)."""
        clip = item.data(CLIP_ROLE)
        if not clip:
            self.window().statusBar().showMessage("this event has no clip: run with --event-clips DIR", 5000) \
                if hasattr(self.window(), "statusBar") else None
            return
        self.opened = QUrl.fromLocalFile(str(Path(clip).resolve()))
        QDesktopServices.openUrl(self.opened)

    def clear(self) -> None:
        self.list.clear()
        self.counts.clear()
        self.summary_label.setText("no events yet")

    def decorate(self, image: np.ndarray) -> np.ndarray:
        """The frame to show: with the heat map blended over it when the toggle is on."""
        if not self.heat_check.isChecked() or self.heat is None:
            return image
        shown = self.heat.render(None, background=image)
        return image if shown is None else shown
