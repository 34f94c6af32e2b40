"""The staged, timed detector: preprocess → backbone → RPN → RoI head → postprocess.

It reads like torchvision's ``GeneralizedRCNN.forward`` and runs the very same modules, so its
detections equal the model's own forward; splitting the stages lets each one be timed and lets the
proposal count, score threshold and class filter change between two calls.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from detector.config import (
    PRECISIONS,
    ConfigError,
    DetectorConfig,
    check_probability,
    check_proposals,
    default_pre_nms,
)
from detector.detections import Detections, valid_names
from detector.factory import ModelInfo, create_model
from detector.stages import STAGES, StageTimes  # noqa: F401 — STAGES re-exported: detector.detector.STAGES

log = logging.getLogger(__name__)


class DeviceError(RuntimeError):
    """The requested device is not available; the message is one line."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} was asked for, but this machine has no CUDA GPU; use --device cpu")
        index = torch.device(name).index or 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype, str | None]:
    """The compute dtype for ``precision`` on ``device``, and a note when a fallback was taken."""
    if precision == "auto":
        return (torch.float16 if device.type == "cuda" else torch.float32), None
    if precision == "fp16" and device.type != "cuda":
        return torch.float32, "fp16 is not supported on the CPU (no fast half kernels); running in fp32 instead"
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision], None


def _decode_in_fp32(model: nn.Module) -> None:
    """Under autocast the RPN head and the box predictor return half tensors; box decoding in half
    precision loses ~0.5 px at 1000 px. Cast their outputs to float32 so that proposals, NMS and
    final boxes are computed in full precision (the heavy convs and fc layers stay in half)."""
    if getattr(model, "_frcnn_fp32_decode", False):
        return

    def rpn_out(module, inputs, output):
        objectness, deltas = output
        return [t.float() for t in objectness], [t.float() for t in deltas]

    def predictor_out(module, inputs, output):
        return tuple(t.float() for t in output)

    model.rpn.head.register_forward_hook(rpn_out)
    model.roi_heads.box_predictor.register_forward_hook(predictor_out)
    model._frcnn_fp32_decode = True


class Detector:
    """A Faster R-CNN ready for frames.

    Args:
        config: what to build and how to run it.
        model, class_names, info: an already built model (tests, training); otherwise the model is
            created from ``config`` by ``detector.factory.create_model``.
    """

    def __init__(self, config: DetectorConfig | None = None, *, model: nn.Module | None = None,
                 class_names: Sequence[str] | None = None, info: ModelInfo | None = None) -> None:
        self.config = config or DetectorConfig()
        self.device = resolve_device(self.config.device)
        self.dtype, note = resolve_precision(self.config.precision, self.device)
        self.notes: list[str] = [note] if note else []
        if model is None:
            model, class_names, info = create_model(self.config)
        if class_names is None:
            raise ValueError("class_names must be given with a model")
        self.model = model.eval().to(self.device)
        if self.device.type == "cuda":
            self.model.backbone.to(memory_format=torch.channels_last)  # faster convs on tensor cores
        _decode_in_fp32(self.model)  # a no-op in fp32; ready for set_precision() to half
        self.class_names = tuple(class_names)
        self.info = info or ModelInfo(type(model).__name__, "given", True, {}, {})
        if self.info.warning:
            self.notes.append(self.info.warning)
        # Knobs are written under a short lock and applied to the model at the start of the next
        # ``detect``: a setter never waits for a running detect (seconds on a CPU), and one call
        # always runs with one consistent set of values. ``_run_lock`` serialises ``detect`` calls.
        self._knob_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._proposals = self._pre_nms = 0
        self._score = 0.0
        self._classes: tuple[str, ...] = ()
        self._apply_static(self.config)
        self.set_proposal_count(self.config.proposals, self.config.pre_nms_proposals)
        self.set_score_threshold(self.config.score_threshold)
        self.set_classes(self.config.classes)
        self.last_times = StageTimes()
        self.last_proposal_counts: list[int] = []

    # ----------------------------------------------------------------- public knobs (thread-safe)
    @property
    def precision(self) -> str:
        return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]

    @property
    def proposal_count(self) -> int:
        return self._proposals

    @property
    def pre_nms_count(self) -> int:
        return self._pre_nms

    @property
    def score_threshold(self) -> float:
        return self._score

    @property
    def classes(self) -> tuple[str, ...]:
        return self._classes

    def set_proposal_count(self, n: int, pre_nms: int | None = None) -> None:
        """Keep the top ``n`` RPN proposals after NMS (per image) from the next call on.

        ``pre_nms``: proposals kept per feature level before NMS; None = max(1000, n), as torchvision.
        """
        check_proposals(n, "proposal count")
        if pre_nms is not None:
            check_proposals(pre_nms, "pre-NMS proposal count")
        with self._knob_lock:
            self._proposals = int(n)
            self._pre_nms = int(pre_nms if pre_nms is not None else default_pre_nms(n))

    def set_score_threshold(self, threshold: float) -> None:
        threshold = check_probability(threshold, "score threshold")
        with self._knob_lock:
            self._score = threshold

    def set_classes(self, names: Sequence[str] | None) -> None:
        """Keep only these classes (empty or None = all). Unknown names raise ``ConfigError`` listing the valid ones."""
        names = tuple(names or ())
        unknown = [n for n in names if n not in self.class_names or n in ("N/A", "__background__")]
        if unknown:
            raise ConfigError(
                f"unknown class name(s) {', '.join(unknown)}; this model knows: {', '.join(valid_names(self.class_names))}"
            )
        with self._knob_lock:
            self._classes = names

    def set_precision(self, precision: str) -> str | None:
        """Compute in ``precision`` ("auto", "fp32", "fp16", "bf16") from the next call on.

        The weights stay fp32 on the device and reduced precision runs under autocast, so nothing
        is reloaded. Returns a note when the device forced a fallback (fp16 on the CPU → fp32).
        """
        if precision not in PRECISIONS:
            raise ConfigError(f"precision {precision!r} is unknown; expected one of {', '.join(PRECISIONS)}")
        dtype, note = resolve_precision(precision, self.device)
        with self._knob_lock:
            self.dtype = dtype
        return note

    def _apply_knobs(self) -> tuple[tuple[str, ...], torch.dtype]:
        """Copy the knobs onto the model for this call; returns (classes, dtype) to use."""
        with self._knob_lock:
            # torchvision keeps the proposal counts in private dicts; this is the one place that touches them.
            self.model.rpn._post_nms_top_n["testing"] = self._proposals
            self.model.rpn._pre_nms_top_n["testing"] = self._pre_nms
            self.model.roi_heads.score_thresh = self._score
            return self._classes, self.dtype

    def _apply_static(self, config: DetectorConfig) -> None:
        transform, roi = self.model.transform, self.model.roi_heads
        if config.min_size is not None:
            transform.min_size = (config.min_size,)
        if config.max_size is not None:
            transform.max_size = config.max_size
        roi.nms_thresh = config.nms_threshold
        roi.detections_per_img = config.detections_per_image

    # ----------------------------------------------------------------- the staged forward
    def __call__(self, frames, **kwargs) -> list[Detections]:
        return self.detect(frames, **kwargs)

    @torch.inference_mode()
    def detect(self, frames: Sequence[np.ndarray] | np.ndarray, *, bgr: bool = False, timing: bool = True) -> list[Detections]:
        """Detect objects in a batch of frames.

        Args:
            frames: uint8 images [H, W, 3] (one, or a sequence; sizes may differ).
            bgr: the frames are BGR (OpenCV order) rather than RGB.
            timing: synchronise the device around each stage so that ``last_times`` is exact.
        Returns:
            one ``Detections`` per frame, boxes in that frame's pixels.
        """
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            frames = [frames]
        frames = list(frames)
        if not frames:
            return []
        for i, f in enumerate(frames):
            if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3 or min(f.shape[:2]) < 1:
                got = f"{f.dtype} {f.shape}" if isinstance(f, np.ndarray) else type(f).__name__
                raise ValueError(f"frame {i} must be a uint8 array [H, W, 3]; got {got}")
        with self._run_lock:
            classes, dtype = self._apply_knobs()  # one consistent set of knobs for the whole call
            times = StageTimes()
            sync = torch.cuda.synchronize if (timing and self.device.type == "cuda") else (lambda: None)
            clock = time.perf_counter

            t = clock()
            images, original_sizes = self._to_tensors(frames, bgr)
            image_list, _ = self.model.transform(images)
            if self.device.type == "cuda":
                image_list.tensors = image_list.tensors.contiguous(memory_format=torch.channels_last)
            sync()
            times.preprocess, t = (clock() - t) * 1e3, clock()

            with self._autocast(dtype):
                features = self.model.backbone(image_list.tensors)
                if isinstance(features, torch.Tensor):
                    features = OrderedDict([("0", features)])
                sync()
                times.backbone, t = (clock() - t) * 1e3, clock()

                proposals, _ = self.model.rpn(image_list, features)
                sync()
                times.rpn, t = (clock() - t) * 1e3, clock()

                detections, _ = self.model.roi_heads(features, proposals, image_list.image_sizes)
                sync()
                times.roi_heads, t = (clock() - t) * 1e3, clock()

            detections = self.model.transform.postprocess(detections, image_list.image_sizes, original_sizes)
            results = [self._to_detections(d, classes) for d in detections]
            times.postprocess = (clock() - t) * 1e3
            self.last_times = times
            self.last_proposal_counts = [len(p) for p in proposals]
        return results

    def _to_tensors(self, frames: list[np.ndarray], bgr: bool) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
        """uint8 [H, W, 3] numpy → float [3, H, W] in [0, 1] on the device (RGB). Resize and
        normalisation follow in the model's transform, on the device."""
        pin = self.device.type == "cuda"
        out = []
        for f in frames:
            t = torch.from_numpy(np.ascontiguousarray(f))
            if pin:
                t = t.pin_memory()
            t = t.to(self.device, non_blocking=True).permute(2, 0, 1)
            if bgr:
                t = t.flip(0)
            out.append(t.float().div_(255.0))
        return out, [(f.shape[0], f.shape[1]) for f in frames]

    def _autocast(self, dtype: torch.dtype):
        if dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _to_detections(self, d: dict[str, torch.Tensor], classes: tuple[str, ...]) -> Detections:
        det = Detections(
            d["boxes"].float().cpu().numpy(),
            d["scores"].float().cpu().numpy(),
            d["labels"].cpu().numpy(),
            self.class_names,
        )
        return det.filter(classes=classes) if classes else det
