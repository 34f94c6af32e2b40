"""Faster R-CNN for frames: config, builders, weights and the staged, timed detector.

Knows tensors and images only — never video files, threads or Qt.
"""

from detector.config import ConfigError, DetectorConfig
from detector.detections import Detections
from detector.detector import STAGES, Detector, DeviceError, StageTimes
from detector.weights import WeightsError

__all__ = [
    "STAGES",
    "ConfigError",
    "Detections",
    "Detector",
    "DetectorConfig",
    "DeviceError",
    "StageTimes",
    "WeightsError",
]
