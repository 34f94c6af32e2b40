"""From the pipeline's threads to the GUI thread: signals, newest-frame-only, zero-copy images.

The pipeline calls ``FrameBridge.push`` from its worker thread; the bridge keeps only the newest item
and emits ``frame_available`` once — a queued signal with no payload — until the GUI thread takes
that item. However slow the display, at most one frame waits: the window never shows a backlog,
and the items it skipped are counted (``replaced``).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal
from PyQt6.QtGui import QImage


class FrameBridge(QObject):
    """A one-slot mailbox between a producer thread and the GUI thread.

    Signals (connect with ``Qt.ConnectionType.QueuedConnection``; they are emitted from any thread):
        frame_available(): a new item can be taken with ``take()``.
        error(str): a one-line message to show in the window.
        finished(object): the run ended (the pipeline's summary, or None).
    """

    frame_available = pyqtSignal()
    error = pyqtSignal(str)
    finished = pyqtSignal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._latest: Any = None
        self._pending = False
        self.pushed = 0
        self.replaced = 0  # items overwritten before the GUI took them (the display was slower)

    def push(self, item: Any) -> None:
        """Offer ``item`` to the GUI (any thread, never blocks for long)."""
        with self._lock:
            if self._latest is not None:
                self.replaced += 1
            self._latest = item
            self.pushed += 1
            notify = not self._pending
            self._pending = True
        if notify:  # one queued event at most, whatever the rate
            self.frame_available.emit()

    def take(self) -> Any:
        """The newest item, or None when there is none (GUI thread)."""
        with self._lock:
            item, self._latest, self._pending = self._latest, None, False
        return item

    def report_error(self, message: str | BaseException) -> None:
        """Forward an error from any thread as one line."""
        from app.errors import first_line

        self.error.emit(first_line(message))


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


def qimage_to_array(image: QImage) -> np.ndarray:
    """A QImage as a uint8 RGB array [H, W, 3] (a copy; screenshots and tests)."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    rows = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()
