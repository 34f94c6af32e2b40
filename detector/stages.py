"""The detector's stages and their timing record — without torch, so that code which only carries
results (a stream's process in ``serve``, sinks, stats) need not load it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

STAGES = ("preprocess", "backbone", "rpn", "roi_heads", "postprocess")


@dataclass
class StageTimes:
    """Milliseconds spent in each stage of one ``detect`` call (for the whole batch)."""

    preprocess: float = 0.0
    backbone: float = 0.0
    rpn: float = 0.0
    roi_heads: float = 0.0
    postprocess: float = 0.0

    @property
    def total(self) -> float:
        return self.preprocess + self.backbone + self.rpn + self.roi_heads + self.postprocess

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "total": self.total}


@dataclass(frozen=True)
class Timed:
    """What one timed ``detect`` call gives, read from no shared state: ``detections`` (one
    ``Detections`` per frame, in order), ``times`` (the whole batch's stage times, ms) and
    ``proposals`` (RPN proposals kept for each frame)."""

    detections: list
    times: StageTimes
    proposals: list[int]


def detect_timed(detector, frames, **kwargs) -> Timed:
    """``detector.detect_timed(frames)`` where its class has it (``Detector``, serve's
    ``RemoteDetector``). A class with only ``detect`` — a test's fake, a wrapper that times or counts
    ``detect`` and forwards the rest with ``__getattr__`` — is called through its ``detect`` and read
    the old way (``last_times``, ``last_proposal_counts``), so that such a wrapper still sees every call."""
    if getattr(type(detector), "detect_timed", None) is not None:
        return detector.detect_timed(frames, **kwargs)
    detections = detector.detect(frames, **kwargs)
    return Timed(detections, getattr(detector, "last_times", StageTimes()),
                 list(getattr(detector, "last_proposal_counts", None) or []))
