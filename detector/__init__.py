"""Faster R-CNN for frames: config, builders, weights and the staged, timed detector.

Knows tensors and images only — never video files, threads or Qt. The names below load on first
use (PEP 562), so that importing a torch-free part (``detector.detections``, ``detector.stages``)
does not load torch.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "STAGES": "detector.stages",
    "StageTimes": "detector.stages",
    "ConfigError": "detector.config",
    "DetectorConfig": "detector.config",
    "Detections": "detector.detections",
    "Detector": "detector.detector",
    "DeviceError": "detector.detector",
    "WeightsError": "detector.weights",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'detector' has no attribute {name!r}")
