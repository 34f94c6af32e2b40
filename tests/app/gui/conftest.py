"""GUI tests run offscreen: no display is needed (pyqtgraph runs its examples the same way).

The clip comes from the shared ``clip10`` fixture (tests/conftest.py). The detector is this
folder's own: the tests turn its knobs, which must not leak into the pipeline tests' detector.
"""

from __future__ import annotations

import os

# Before any Qt import: pytest-qt creates the QApplication lazily, after this conftest is loaded.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def _gui_detector():
    from detector.config import DetectorConfig
    from detector.detector import Detector

    return Detector(DetectorConfig(model="paper", weights="random", backbone="resnet18", min_size=128,
                                   max_size=160, device="cpu", score_threshold=0.0))


@pytest.fixture
def gui_detector(_gui_detector):
    """A real Faster R-CNN, small and fast on a CPU; score threshold 0 so that boxes always come
    out, even with random weights. Built once (warm), its knobs reset for every test."""
    d = _gui_detector
    d.set_proposal_count(300)
    d.set_score_threshold(0.0)
    d.set_classes(())
    d.set_precision("fp32")
    return d
