"""Building the detector for a run: thread budget, int8 calibration frames, and the CPU probe.

``build_detector`` is what ``run.py``, the window and the benchmark call instead of
``Detector(config)``: it sets torch's threads (``app.threads``), hands the detector real frames of
the bundled sample clip for int8 calibration (decoded only if int8 is asked for or probed), and on
a CPU resolves ``precision="auto"`` / ``memory_format="auto"`` with ``detector.probe`` — measured
once per model and machine, then read from the user's cache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from app.threads import ThreadBudget, apply_torch, plan
from detector.config import DetectorConfig
from detector.factory import ASSETS_DIR

log = logging.getLogger(__name__)

BUNDLED_SAMPLE = ASSETS_DIR / "sample.mp4"
CALIBRATION_FRAMES = 8
PROBE_FRAMES = 2


@lru_cache(maxsize=4)
def _decode_spread(path: str, n: int) -> tuple[np.ndarray, ...]:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    if not frames:
        raise ValueError(f"{path} holds no decodable frames")
    step = max(1, len(frames) // n)
    return tuple(frames[::step][:n])


def sample_frames(n: int = CALIBRATION_FRAMES, path: Path = BUNDLED_SAMPLE) -> list[np.ndarray]:
    """``n`` RGB frames ``[H, W, 3]`` spread evenly over the bundled sample clip (decoded once).

    They calibrate int8 and time the probe. They are street scenes like the default model's
    training data; for other footage int8's ranges may fit less well (the accuracy gate, measured
    on labelled frames, is what decides whether auto may pick int8)."""
    return list(_decode_spread(str(path), n))


@dataclass
class DetectorSetup:
    """What ``build_detector`` decided, for the user: one line each."""

    budget: ThreadBudget
    notes: list[str] = field(default_factory=list)
    probe: object | None = None  # detector.probe.ProbeResult when the probe ran

    def with_threads(self, config):
        """``config`` (a ``PipelineConfig``) with the budget's decoder and encoder threads, unless
        it sets its own."""
        return config.with_(decode_threads=config.decode_threads or self.budget.decode,
                            encode_threads=config.encode_threads or self.budget.encode)


def build_detector(config: DetectorConfig, *, reprobe: bool = False, budget: ThreadBudget | None = None,
                   calibration: Callable[[], list[np.ndarray]] | None = sample_frames,
                   probe: Callable | None = None):
    """The detector for ``config``, set up for speed on this machine. Returns (detector, setup).

    Args:
        reprobe: measure the CPU candidates again instead of reading the cached answer.
        budget: threads (default: ``app.threads.plan()`` for the device).
        calibration: a function returning int8 calibration frames (None: int8 unavailable).
        probe: ``detector.probe.choose_cpu_setup`` or a stand-in (tests).
    """
    from detector.detector import Detector, resolve_device

    device = resolve_device(config.device)
    budget = budget or plan(gpu=device.type == "cuda")
    apply_torch(budget)
    detector = Detector(config, calibration=calibration)
    setup = DetectorSetup(budget)
    auto = config.precision == "auto" or config.memory_format == "auto"
    if device.type == "cpu" and auto and calibration is not None:
        from detector.probe import choose_cpu_setup

        precisions = ("fp32", "bf16", "int8") if config.precision == "auto" else (detector.precision,)
        formats = (False, True) if config.memory_format == "auto" else (config.memory_format == "channels_last",)
        result = (probe or choose_cpu_setup)(detector, calibration()[:PROBE_FRAMES], precisions=precisions,
                                             memory_formats=formats, refresh=reprobe)
        setup.probe = result
        setup.notes.append(result.reason)
    return detector, setup
