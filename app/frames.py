"""The records that travel through the pipeline: a decoded ``Frame`` and its ``Result``."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from detector.detections import Detections
from detector.stages import StageTimes

if TYPE_CHECKING:
    from app.analytics.analytics import Overlay


@dataclass(frozen=True)
class Frame:
    """One decoded picture.

    Attributes:
        index: position in the source, counting from 0 (frames that failed to decode are not
            counted; dropped live frames are, so gaps show what was dropped).
        pts: presentation timestamp in units of ``time_base``, relative to the source's first frame.
        time_base: seconds per ``pts`` unit, exact (``Fraction(1, 30000)`` keeps 29.97 fps exact).
        image: uint8 [H, W, 3], RGB.
        captured: ``time.monotonic()`` when the frame left the decoder or camera — the start of
            the capture-to-result latency.
        file: the image file it was read from (image folders); "" for video, cameras and streams.
    """

    index: int
    pts: int
    time_base: Fraction
    image: np.ndarray
    captured: float
    file: str = ""

    @property
    def timestamp(self) -> Fraction:
        """Seconds since the source's first frame, exact."""
        return self.pts * self.time_base

    @property
    def seconds(self) -> float:
        return float(self.timestamp)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.image.shape[1], self.image.shape[0]


@dataclass(frozen=True)
class Result:
    """What the detector made of one frame.

    Attributes:
        frame: the frame, untouched.
        detections: boxes in the frame's pixels.
        times: stage times of the ``detect`` call this frame was part of, divided by the batch size.
        proposals: RPN proposals the detector kept for this frame.
        done: ``time.monotonic()`` when the detections were ready.
        batch_size: how many frames shared the ``detect`` call.
        overlay: trails and counter states to draw (``app.analytics.analytics``); None when tracking is off.
        detected: False when a live frame was skipped by the adaptive controller and carries the
            detections of the last detected frame.
    """

    frame: Frame
    detections: Detections
    times: StageTimes = field(default_factory=StageTimes)
    proposals: int = 0
    done: float = 0.0
    batch_size: int = 1
    overlay: Overlay | None = None
    detected: bool = True
