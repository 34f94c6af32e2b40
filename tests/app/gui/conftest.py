"""GUI tests run offscreen: no display is needed (pyqtgraph runs its examples the same way)."""

from __future__ import annotations

import os

# Before any Qt import: pytest-qt creates the QApplication lazily, after this conftest is loaded.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
