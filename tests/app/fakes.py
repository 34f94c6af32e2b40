"""Test doubles for the app tests."""

from __future__ import annotations

import time

import numpy as np

from detector.detections import Detections
from detector.detector import StageTimes

NAMES = ("__background__", "person", "car")


class FakeDetector:
    """Stands in for ``Detector``: one box per frame at the frame's index, optional delay and failure."""

    def __init__(self, delay_s: float = 0.0, fail_at: int | None = None) -> None:
        self.delay_s, self.fail_at = delay_s, fail_at
        self.calls: list[int] = []
        self.last_times = StageTimes()
        self.last_proposal_counts: list[int] = []
        self.proposals = 300
        self.seen = 0

    def detect(self, frames, **kwargs):
        self.calls.append(len(frames))
        time.sleep(self.delay_s)
        out = []
        for _ in frames:
            if self.fail_at is not None and self.seen == self.fail_at:
                raise RuntimeError(f"boom at frame {self.seen}")
            out.append(Detections(np.array([[self.seen, 1, self.seen + 10, 20]], np.float32), [0.9], [1], NAMES))
            self.seen += 1
        self.last_times = StageTimes(backbone=10.0 * len(frames), rpn=2.0 * len(frames))
        self.last_proposal_counts = [self.proposals] * len(frames)
        return out

    def set_proposal_count(self, n):
        self.proposals = n
