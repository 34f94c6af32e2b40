"""From the pipeline's threads to the GUI thread: a newest-item-only mailbox, zero-copy images.

However slow the display, at most one frame per stream waits in the ``FrameBridge``: the window
never shows a backlog, and the items it skipped are counted (``replaced``).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal
from PyQt6.QtGui import QImage


class FrameBridge(QObject):
    """A mailbox of one slot per key (a stream; or a controller knob) between producer threads and
    the GUI thread (or the controller's).

    Signal (connect with ``Qt.ConnectionType.QueuedConnection``; it is emitted from any thread, once
    until the items are taken): frame_available(): new items can be taken with ``take_all()``.
    """

    frame_available = pyqtSignal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._latest: dict[Any, Any] = {}
        self._pending = False
        self.replaced = 0  # items overwritten before the GUI took them (the display was slower)

    def push(self, item: Any, key: Any = None) -> None:
        """Offer ``item`` of stream ``key`` to the GUI (any thread, never blocks for long)."""
        with self._lock:
            if key in self._latest:
                self.replaced += 1
            self._latest[key] = item
            notify = not self._pending
            self._pending = True
        if notify:  # one queued event at most, whatever the rate
            self.frame_available.emit()

    def take_all(self) -> dict[Any, Any]:
        """The newest item of every key that has one (GUI thread)."""
        with self._lock:
            items, self._latest, self._pending = self._latest, {}, False
        return items


def rgb_to_qimage(frame: np.ndarray) -> QImage:
    """Wrap a uint8 RGB frame [H, W, 3] in a QImage without copying the pixels.

    The QImage points into ``frame``'s buffer; the array is kept alive as an attribute of the image,
    so the pair lives and dies together. A non-contiguous frame is copied once to make it contiguous.
    Callers must not write into ``frame`` while the image is in use.
    """
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"a frame for display must be a uint8 RGB array [H, W, 3]; got {got}")
    if not frame.flags.c_contiguous:
        frame = np.ascontiguousarray(frame)
    height, width = frame.shape[:2]
    image = QImage(frame.data, width, height, frame.strides[0], QImage.Format.Format_RGB888)
    image._frame = frame  # keep the buffer alive as long as the image
    return image

