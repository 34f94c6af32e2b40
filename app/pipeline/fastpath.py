"""Building the detector for a run (``build_detector``, called instead of ``Detector(config)``):
torch's threads (``app.pipeline.threads``), frames of the bundled sample clip for int8 calibration,
and on a CPU ``precision="auto"`` / ``memory_format="auto"`` resolved by ``detector.probe``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from app.io.paths import ffmpeg_file
from app.pipeline.threads import ThreadBudget, apply_torch, plan
from detector.config import DetectorConfig
from detector.factory import ASSETS_DIR

BUNDLED_SAMPLE = ASSETS_DIR / "sample.mp4"
CALIBRATION_FRAMES = 8
PROBE_FRAMES = 2


@lru_cache(maxsize=4)
def _decode_spread(path: str, n: int) -> tuple[np.ndarray, ...]:
    """``n`` frames spread over the clip; only those are converted to RGB (converting is the slow part)."""
    import av

    with av.open(ffmpeg_file(path)) as container:
        stream = container.streams.video[0]
        frames = container.decode(stream)
        total = stream.frames or 0
        if not total:  # no frame count in the header: decode every frame, then spread
            frames = list(frames)
            total = len(frames)
        step = max(1, total // n)
        kept = [f.to_ndarray(format="rgb24") for f in itertools.islice(frames, 0, min(total, step * n), step)]
    if not kept:
        raise ValueError(f"{path} holds no decodable frames")
    return tuple(kept)


def sample_frames(n: int = CALIBRATION_FRAMES, path: Path = BUNDLED_SAMPLE) -> list[np.ndarray]:
    """``n`` RGB frames ``[H, W, 3]`` spread evenly over the bundled sample clip (decoded once):
    street scenes like the default model's training data, to calibrate int8 and time the probe."""
    return list(_decode_spread(str(path), n))


@dataclass
class DetectorSetup:
    """What ``build_detector`` decided, for the user: one line each."""

    budget: ThreadBudget
    notes: list[str] = field(default_factory=list)
    probe: object | None = None  # detector.probe.CpuTuner while/after auto is measured on the run's frames

    def take_announcement(self) -> str | None:
        """The tuner's line saying what auto chose, once per choice (None when there is nothing new)."""
        return self.probe.announcement() if self.probe is not None else None

    def summary_lines(self) -> list[str]:
        """What --precision auto chose (or that it was still measuring), then the other notes."""
        return ([self.probe.status()] if self.probe is not None else []) + self.notes

    def with_threads(self, config):
        """``config`` (a ``PipelineConfig``) with the budget's decoder and encoder threads, unless
        it sets its own."""
        return config.with_(decode_threads=config.decode_threads or self.budget.decode,
                            encode_threads=config.encode_threads or self.budget.encode)


def build_detector(config: DetectorConfig, *, reprobe: bool = False, budget: ThreadBudget | None = None,
                   calibration: Callable[[], list[np.ndarray]] | None = sample_frames,
                   wait: bool = False, probe: Callable | None = None):
    """The detector for ``config``, set up for speed on this machine. Returns (detector, setup).

    On a CPU with ``precision``/``memory_format`` "auto" it returns at once: the detector runs the
    cached choice, or the safe one while a ``detector.probe.CpuTuner`` measures the candidates on
    its first calls (``setup.take_announcement()`` says when it switched).

    Args:
        reprobe: measure the CPU candidates again instead of reading the cached answer.
        budget: threads (default: ``app.pipeline.threads.plan()`` for the device).
        calibration: a function returning int8 calibration frames (None: int8 unavailable).
        wait: measure now on the calibration frames and return with the choice applied
            (benchmarks that must not time the measuring calls).
        probe: ``detector.probe.tune_cpu`` or a stand-in (tests).
    """
    from detector.detector import Detector, resolve_device

    device = resolve_device(config.device)
    budget = budget or plan(gpu=device.type == "cuda")
    apply_torch(budget)
    detector = Detector(config, calibration=calibration)
    setup = DetectorSetup(budget)
    auto = config.precision == "auto" or config.memory_format == "auto"
    if device.type == "cpu" and auto and calibration is not None:
        from detector.probe import tune_cpu

        precisions = ("fp32", "bf16", "int8") if config.precision == "auto" else (detector.precision,)
        formats = (False, True) if config.memory_format == "auto" else (config.memory_format == "channels_last",)
        if len(precisions) * len(formats) > 1:
            setup.probe = (probe or tune_cpu)(detector, precisions=precisions, memory_formats=formats, refresh=reprobe)
            if wait:
                setup.probe.measure_now(detector, calibration()[:PROBE_FRAMES])
    return detector, setup
