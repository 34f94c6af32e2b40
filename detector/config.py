"""One frozen configuration object for the detector, filled by the CLI and the GUI alike."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
DEVICES = ("auto", "cpu", "cuda")

# Weights sources that are not file paths.
WEIGHTS_DEFAULT = "default"  # the bundled checkpoint in assets/ (falls back to random, loudly)
WEIGHTS_TORCHVISION = "torchvision"  # torchvision's weights API (downloads when online)
WEIGHTS_RANDOM = "random"  # untrained: for tests and speed measurements only
DEFAULT_SCORE_THRESHOLD = 0.5  # for models that do not name their own
DEFAULT_NMS_THRESHOLD = 0.5  # the RoI head's per-class NMS IoU (torchvision's), for models that do not name theirs


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the field and the value."""


@dataclass(frozen=True)
class DetectorConfig:
    """Everything that decides what the detector is and how it runs.

    Attributes:
        model: a name from ``detector.builders.MODEL_NAMES`` ("default", "paper", or one of
            torchvision's COCO Faster R-CNN builders).
        weights: "default", "torchvision", "random", or a path to a ``.pt``/``.pth`` file.
        backbone: backbone of the ``paper`` model (see ``detector.backbones.BACKBONES``).
        device: "auto" (cuda when available), "cpu" or "cuda" / "cuda:N".
        precision: "auto", "fp32", "fp16", "bf16" or "int8". auto = fp16 on CUDA; on the CPU fp32,
            unless the app's probe (``detector.probe``) measured another one faster on this machine.
            int8 (CPU only) quantizes the backbone (static, calibrated on real frames) and the box
            head's fc layers (dynamic); see ``detector.quantize``.
        memory_format: "auto" (channels_last on CUDA; on the CPU what the probe measured faster,
            else contiguous), "channels_last" or "contiguous": the layout of the backbone's weights
            and input.
        proposals: RPN proposals kept after NMS per image at test time (the paper's top-N).
        pre_nms_proposals: RPN proposals kept before NMS (per feature level); None = max(1000,
            proposals), torchvision's own test-time setting.
        score_threshold: detections scoring below are dropped. None = the model's own (a checkpoint's
            ``meta["score_threshold"]``, chosen when it was made), else ``DEFAULT_SCORE_THRESHOLD``.
        nms_threshold: IoU of the per-class NMS in the RoI head. None = the model's own
            (``meta["nms_threshold"]``, chosen when it was made), else 0.5 (torchvision's).
        contained_threshold: after NMS, drop a box with at least this share of its area inside a
            higher-scoring box of its class (a head or torso inside the person's box, which NMS keeps
            for its low IoU). None = off (the model's own, ``meta["contained_threshold"]``, else off).
        int8_float: int8 only: the backbone's layers (qualified names) left in float. None = the
            layers the model's profile names for this CPU's int8 scheme (``detector.profiles``), else none.
        classes: class names to keep; empty = all.
        min_size / max_size: the image is resized so that its short side is ``min_size`` unless the
            long side would exceed ``max_size``. None = the model's own setting.
        detections_per_image: upper bound on detections returned per image.
        seed: seeds random initialisation (weights="random") so that runs are reproducible.
    """

    model: str = "default"
    weights: str = WEIGHTS_DEFAULT
    backbone: str = "mobilenet_v2"
    device: str = "auto"
    precision: str = "auto"
    memory_format: str = "auto"
    proposals: int = 300
    pre_nms_proposals: int | None = None
    score_threshold: float | None = None
    nms_threshold: float | None = None
    contained_threshold: float | None = None
    int8_float: tuple[str, ...] | None = None
    classes: tuple[str, ...] = field(default_factory=tuple)
    min_size: int | None = None
    max_size: int | None = None
    detections_per_image: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        from detector.builders import MODEL_NAMES  # local: builders imports torchvision

        if self.model not in MODEL_NAMES:
            raise ConfigError(f"model {self.model!r} is unknown; expected one of {', '.join(MODEL_NAMES)}")
        from detector.backbones import available_backbones

        if self.backbone not in available_backbones():
            raise ConfigError(f"backbone {self.backbone!r} is unknown; expected one of {', '.join(available_backbones())}")
        if not isinstance(self.weights, str) or not self.weights:
            raise ConfigError(f"weights {self.weights!r} must be 'default', 'torchvision', 'random' or a file path")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is unknown; expected one of {', '.join(PRECISIONS)}")
        if self.memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"memory format {self.memory_format!r} is unknown; expected one of {', '.join(MEMORY_FORMATS)}")
        if not (self.device in DEVICES or isinstance(self.device, str) and re.fullmatch(r"cuda:\d+", self.device)):
            raise ConfigError(f"device {self.device!r} is unknown; expected auto, cpu, cuda or cuda:N")
        check_proposals(self.proposals, "proposals")
        if self.pre_nms_proposals is not None:
            check_proposals(self.pre_nms_proposals, "pre_nms_proposals")
        if self.score_threshold is not None:
            check_probability(self.score_threshold, "score_threshold")
        if self.nms_threshold is not None:
            check_probability(self.nms_threshold, "nms_threshold")
        if self.contained_threshold is not None:
            check_probability(self.contained_threshold, "contained_threshold")
        for name, value in (("min_size", self.min_size), ("max_size", self.max_size)):
            if value is not None and (not _is_int(value) or value < 32):
                raise ConfigError(f"{name} {value!r} must be an integer ≥ 32 pixels")
        if self.min_size and self.max_size and self.min_size > self.max_size:
            raise ConfigError(f"min_size {self.min_size} is larger than max_size {self.max_size}")
        if not _is_int(self.detections_per_image) or self.detections_per_image < 1:
            raise ConfigError(f"detections_per_image {self.detections_per_image!r} must be an integer ≥ 1")
        if isinstance(self.classes, str) or not all(isinstance(c, str) and c for c in self.classes):
            raise ConfigError(f"classes {self.classes!r} must be a tuple of non-empty class names")
        object.__setattr__(self, "classes", tuple(self.classes))

    @property
    def weights_path(self) -> Path | None:
        """The weights file, when ``weights`` names one."""
        if self.weights in (WEIGHTS_DEFAULT, WEIGHTS_TORCHVISION, WEIGHTS_RANDOM):
            return None
        return Path(self.weights)

    @property
    def effective_pre_nms(self) -> int:
        if self.pre_nms_proposals is not None:
            return self.pre_nms_proposals
        return default_pre_nms(self.proposals)

    def with_(self, **changes) -> DetectorConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


def default_pre_nms(proposals: int) -> int:
    """Pre-NMS proposals per level when none is set: torchvision's test-time 1000, or the post-NMS
    count when that is larger (NMS cannot keep more than it is given). At equal settings the staged
    detector then does exactly the RPN work of the torchvision model."""
    return max(1000, proposals)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_proposals(value, name: str = "proposals") -> int:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{name} {value!r} must be an integer ≥ 1")
    if value > 100_000:
        raise ConfigError(f"{name} {value} is larger than 100000; that is not a real-time setting")
    return value


def check_probability(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} {value!r} must be a number between 0 and 1")
    return float(value)
