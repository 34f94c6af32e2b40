"""Reading back what a widget painted, for the GUI tests."""

from __future__ import annotations

import numpy as np
from PyQt6.QtGui import QImage


def qimage_to_array(image: QImage) -> np.ndarray:
    """A QImage as a uint8 RGB array [H, W, 3] (a copy)."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    rows = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()
