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
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from detector.boxes import contained_in_higher
from detector.config import (
    DEFAULT_NMS_THRESHOLD,
    DEFAULT_SCORE_THRESHOLD,
    MEMORY_FORMATS,
    PRECISIONS,
    ConfigError,
    DetectorConfig,
    check_probability,
    check_proposals,
    default_pre_nms,
)
from detector.detections import Detections, valid_names
from detector.factory import ModelInfo, create_model
from detector.parallel_roi import ParallelRoIPool
from detector.stages import STAGES, StageTimes, Timed  # noqa: F401 — STAGES re-exported: detector.detector.STAGES

log = logging.getLogger(__name__)

PRESCALE_BELOW = 0.6  # frames shrunk by more than this (to 60 % of their size) are first shrunk in uint8


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


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str | None]:
    """The precision that ``precision`` means on ``device`` ("fp32", "fp16", "bf16" or "int8"), and
    a note when a fallback was taken. "auto" here is fp16 on CUDA, fp32 on the CPU; the app's probe
    (``detector.probe``) may then set a faster one it measured."""
    if precision == "auto":
        return ("fp16" if device.type == "cuda" else "fp32"), None
    if precision == "fp16" and device.type != "cuda":
        return "fp32", "fp16 is not supported on the CPU (no fast half kernels); running in fp32 instead"
    if precision == "int8" and device.type != "cpu":
        return "fp16", "int8 is a CPU path (torch.ao's x86 kernels); running in fp16 on the GPU instead"
    return precision, None


_AUTOCAST = {"fp32": torch.float32, "int8": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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


def own_score_threshold(info) -> float:
    """A model's own score threshold (``info.meta["score_threshold"]``, chosen when its checkpoint was
    made), else ``DEFAULT_SCORE_THRESHOLD``; ``info`` is the factory's model info."""
    value = info.meta.get("score_threshold", DEFAULT_SCORE_THRESHOLD)
    return check_probability(value, f"the score threshold of {info.source}")


class Detector:
    """A Faster R-CNN ready for frames.

    Args:
        config: what to build and how to run it.
        model, class_names, info: an already built model (tests, training); otherwise the model is
            created from ``config`` by ``detector.factory.create_model``.
        calibration: real uint8 RGB frames ``[H, W, 3]`` (or a function returning them, called only
            when int8 is first asked for) on which the int8 backbone's activation ranges are measured.
    """

    def __init__(self, config: DetectorConfig | None = None, *, model: nn.Module | None = None,
                 class_names: Sequence[str] | None = None, info: ModelInfo | None = None,
                 calibration: Sequence[np.ndarray] | Callable[[], Sequence[np.ndarray]] | None = None) -> None:
        self.config = config or DetectorConfig()
        self.device = resolve_device(self.config.device)
        precision, note = resolve_precision(self.config.precision, self.device)
        self.notes: list[str] = [note] if note else []
        self.calibration = calibration
        self._int8: tuple[nn.Module, nn.Module] | None = None  # (backbone, box head), built on first use
        if model is None:
            model, class_names, info = create_model(self.config)
        if class_names is None:
            raise ValueError("class_names must be given with a model")
        self.model = model.eval().to(self.device)
        if self.device.type == "cpu" and not isinstance(self.model.roi_heads.box_roi_pool, ParallelRoIPool):
            # torchvision's CPU RoIAlign runs on one thread: spread the proposals over every core
            self.model.roi_heads.box_roi_pool = ParallelRoIPool(self.model.roi_heads.box_roi_pool)
        self._float_box_head = self.model.roi_heads.box_head
        self._applied_channels_last = False  # the layout the backbone's weights are in now
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
        self._precision = "fp32"
        self._channels_last = False
        self._apply_static(self.config)
        transform = self.model.transform
        self._base_size = (int(transform.min_size[-1]), int(transform.max_size))  # (short side, long-side cap)
        self._input_size = self._base_size[0]
        self.set_proposal_count(self.config.proposals, self.config.pre_nms_proposals)
        self.set_score_threshold(self.default_score_threshold if self.config.score_threshold is None
                                 else self.config.score_threshold)
        self.set_classes(self.config.classes)
        self.set_precision(precision)
        # channels_last: faster convs on CUDA's tensor cores; on a CPU it depends on the CPU and
        # the model, so "auto" stays contiguous until the app's probe has measured it.
        self.set_memory_format(self.config.memory_format)
        self.last_times = StageTimes()
        self.last_proposal_counts: list[int] = []
        # ``detector.probe.CpuTuner`` while --precision/--memory-format auto is being measured on
        # this run's own calls; an explicit ``set_precision``/``set_memory_format`` ends it.
        self.tuner = None

    # ----------------------------------------------------------------- public knobs (thread-safe)
    @property
    def precision(self) -> str:
        return self._precision

    @property
    def dtype(self) -> torch.dtype:
        """The autocast dtype of the current precision (float32 for fp32 and int8)."""
        return _AUTOCAST[self._precision]

    @property
    def channels_last(self) -> bool:
        return self._channels_last

    @property
    def input_size(self) -> int:
        """The short side, in pixels, frames are resized to before the backbone."""
        return self._input_size

    @property
    def base_input_size(self) -> int:
        """The model's own short side (its configured ``min_size``)."""
        return self._base_size[0]

    @property
    def int8_available(self) -> bool:
        """Whether ``set_precision("int8")`` can work: a CPU, torch's x86 engine, calibration frames."""
        from detector.quantize import int8_supported

        return self.device.type == "cpu" and (self._int8 is not None or (self.calibration is not None and int8_supported()))

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
    def default_score_threshold(self) -> float:
        """The model's own threshold (its checkpoint's ``meta["score_threshold"]``), else 0.5."""
        return own_score_threshold(self.info)

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
        """Compute in ``precision`` ("auto", "fp32", "fp16", "bf16", "int8") from the next call on.

        The weights stay fp32 on the device and fp16/bf16 run under autocast, so nothing is
        reloaded. int8 quantizes a copy of the backbone and the box head the first time it is asked
        for (seconds, on the calling thread; see ``detector.quantize``) and keeps it. Returns a note
        when the device forced a fallback (fp16 on the CPU → fp32, int8 on a GPU → fp16).
        """
        if precision not in PRECISIONS:
            raise ConfigError(f"precision {precision!r} is unknown; expected one of {', '.join(PRECISIONS)}")
        precision, note = resolve_precision(precision, self.device)
        if precision == "int8":
            self._ensure_int8()
        self.tuner = None  # the user's choice now, not the tuner's
        with self._knob_lock:
            self._precision = precision
        return note

    def set_cpu_setup(self, precision: str, channels_last: bool) -> None:
        """The tuner's knob: precision and layout together, from the next call on, without ending
        the tuner. int8 must be ready (``prepare_int8``); a precision not built yet is refused."""
        if precision not in ("fp32", "bf16", "int8") or (precision == "int8" and self._int8 is None):
            raise ConfigError(f"CPU setup {precision!r} is not ready here")
        with self._knob_lock:
            self._precision, self._channels_last = precision, bool(channels_last)

    def prepare_int8(self) -> None:
        """Build the int8 backbone and box head now (seconds; any thread) without switching to int8."""
        self._ensure_int8()

    def set_memory_format(self, memory_format: str) -> None:
        """Lay out the backbone's weights and input as "channels_last" or "contiguous" from the
        next call on ("auto" = channels_last on CUDA, contiguous on the CPU)."""
        if memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"memory format {memory_format!r} is unknown; expected one of {', '.join(MEMORY_FORMATS)}")
        on = memory_format == "channels_last" or (memory_format == "auto" and self.device.type == "cuda")
        self.tuner = None
        with self._knob_lock:
            self._channels_last = on

    def set_input_size(self, short_side: int) -> None:
        """Resize frames so that their short side is ``short_side`` pixels from the next call on.

        The long-side cap scales with it (the model's max/min ratio), so every frame keeps the
        aspect-ratio handling it had at the model's own size. Fewer pixels: a faster backbone and
        RPN, and fewer small objects found.
        """
        if not isinstance(short_side, int) or isinstance(short_side, bool) or not 32 <= short_side <= 4096:
            raise ConfigError(f"input size {short_side!r} must be an integer number of pixels in 32..4096")
        with self._knob_lock:
            self._input_size = short_side

    def _ensure_int8(self) -> None:
        """Build the int8 backbone and box head once (outside the knob lock: it takes seconds; detect
        calls wait only while torch.fx traces)."""
        if self._int8 is not None:
            return
        from detector.quantize import QuantizationError, quantize_backbone, quantize_box_head, to_images

        if self.device.type != "cpu":
            raise ConfigError("int8 runs on the CPU only")
        frames = self.calibration() if callable(self.calibration) else self.calibration
        if not frames:
            raise ConfigError("int8 needs calibration frames (real frames of the kind the model will see); none were given")
        # torch.fx's tracer patches nn.Module.__call__ for the whole process while it traces, so
        # no detect may run then: the run lock is held while the backbone is copied and traced
        # (~0.5 s on 2 cores), not while it is calibrated (the larger part), which runs beside detect.
        with self._run_lock:  # the transform is shared with detect
            if self._int8 is not None:
                return
            images = to_images(self.model.transform, frames, self.device)
        try:
            backbone = quantize_backbone(self.model.backbone, images, exclusive=lambda: self._run_lock,
                                         float_layers=self.int8_float_layers)
            head = quantize_box_head(self._float_box_head)
        except QuantizationError as exc:
            raise ConfigError(f"int8: {exc}") from None
        with self._run_lock:
            if self._int8 is None:
                self._int8 = (backbone, head)

    def _apply_knobs(self) -> tuple[tuple[str, ...], str, bool]:
        """Copy the knobs onto the model for this call; returns (classes, precision, channels_last)."""
        with self._knob_lock:
            # torchvision keeps the proposal counts in private dicts; this is the one place that touches them.
            self.model.rpn._post_nms_top_n["testing"] = self._proposals
            self.model.rpn._pre_nms_top_n["testing"] = self._pre_nms
            self.model.roi_heads.score_thresh = self._score
            short, long_cap = self._base_size
            self.model.transform.min_size = (self._input_size,)
            self.model.transform.max_size = max(self._input_size, round(self._input_size * long_cap / short))
            precision, channels_last = self._precision, self._channels_last
            classes = self._classes
        int8 = precision == "int8" and self._int8 is not None
        self.model.roi_heads.box_head = self._int8[1] if int8 else self._float_box_head
        if channels_last != self._applied_channels_last:
            self.model.backbone.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            self._applied_channels_last = channels_last
        return classes, precision, channels_last

    def _apply_static(self, config: DetectorConfig) -> None:
        transform, roi = self.model.transform, self.model.roi_heads
        if config.min_size is not None:
            transform.min_size = (config.min_size,)
        if config.max_size is not None:
            transform.max_size = config.max_size
        roi.nms_thresh = self.nms_threshold
        roi.detections_per_img = config.detections_per_image

    # ----------------------------------------------------------------- the staged forward
    def __call__(self, frames, **kwargs) -> list[Detections]:
        return self.detect(frames, **kwargs)

    def detect(self, frames: Sequence[np.ndarray] | np.ndarray, *, bgr: bool = False, timing: bool = True) -> list[Detections]:
        """Detect objects in a batch of frames.

        Args:
            frames: uint8 images [H, W, 3] (one, or a sequence; sizes may differ).
            bgr: the frames are BGR (OpenCV order) rather than RGB.
            timing: synchronise the device around each stage so that the stage times are exact.
        Returns:
            one ``Detections`` per frame, boxes in that frame's pixels. This call's stage times and
            proposal counts: ``detect_timed`` (or, after the call, ``last_times`` / ``last_proposal_counts``).
        """
        return self.detect_timed(frames, bgr=bgr, timing=timing).detections

    @torch.inference_mode()
    def detect_timed(self, frames: Sequence[np.ndarray] | np.ndarray, *, bgr: bool = False, timing: bool = True) -> Timed:
        """``detect``, with this call's stage times (ms, the whole batch) and proposals per frame:
        ``Timed(detections, times, proposals)`` — not read afterwards from ``last_times``, which
        another thread's call may already have replaced."""
        if isinstance(frames, np.ndarray) and frames.ndim != 4:  # one frame (a bad one is named whole below)
            frames = [frames]
        frames = list(frames)
        if not frames:
            return Timed([], StageTimes(), [])
        for i, f in enumerate(frames):
            if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3 or min(f.shape[:2]) < 1:
                got = f"{f.dtype} {f.shape}" if isinstance(f, np.ndarray) else type(f).__name__
                raise ValueError(f"frame {i} must be a uint8 array [H, W, 3]; got {got}")
        with self._run_lock:
            tuner = self.tuner
            candidate = tuner.before(self) if tuner is not None else None  # may set this call's precision/layout
            classes, precision, channels_last = self._apply_knobs()  # one consistent set of knobs for the whole call
            times = StageTimes()
            sync = torch.cuda.synchronize if (timing and self.device.type == "cuda") else (lambda: None)
            clock = time.perf_counter

            t = clock()
            images, original_sizes = self._to_tensors(frames, bgr)
            image_list, _ = self.model.transform(images)
            if channels_last:
                image_list.tensors = image_list.tensors.contiguous(memory_format=torch.channels_last)
            sync()
            times.preprocess, t = (clock() - t) * 1e3, clock()

            backbone = self._int8[0] if precision == "int8" and self._int8 is not None else self.model.backbone
            with self._autocast(_AUTOCAST[precision]):
                features = backbone(image_list.tensors)
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
            if self.contained_threshold is not None:
                detections = [self._drop_contained(d) for d in detections]
            results = [self._to_detections(d, classes) for d in detections]
            times.postprocess = (clock() - t) * 1e3
            counts = [len(p) for p in proposals]
            self.last_times, self.last_proposal_counts = times, counts
            if tuner is not None:
                tuner.after(candidate, times, counts, len(frames))
        return Timed(results, times, counts)

    def _to_tensors(self, frames: list[np.ndarray], bgr: bool) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
        """uint8 [H, W, 3] numpy → float [3, H, W] in [0, 1] on the device (RGB). Resize and
        normalisation follow in the model's transform, on the device.

        A frame far larger than the input size (the adaptive controller's small sizes) is first
        shrunk on the CPU in uint8 with OpenCV's area filter to the size the transform would give:
        converting and resizing the full frame in float took 8–9 ms of a 38 ms frame at 240 px.
        Returned sizes are the frames' own, so boxes still come back in frame pixels."""
        pin = self.device.type == "cuda"
        out = []
        for f in frames:
            t = torch.from_numpy(np.ascontiguousarray(self._prescale(f)))
            if pin:
                t = t.pin_memory()
            t = t.to(self.device, non_blocking=True).permute(2, 0, 1)
            if bgr:
                t = t.flip(0)
            out.append(t.float().div_(255.0))
        return out, [(f.shape[0], f.shape[1]) for f in frames]

    def _prescale(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` shrunk to the transform's output size when that is under ``PRESCALE_BELOW`` of
        it (else untouched: at the model's own sizes the result equals the model's own forward)."""
        h, w = frame.shape[:2]
        transform = self.model.transform
        scale = min(transform.min_size[-1] / min(h, w), transform.max_size / max(h, w))
        if scale >= PRESCALE_BELOW or self.device.type != "cpu":
            return frame
        import cv2

        return cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)

    def _autocast(self, dtype: torch.dtype):
        if dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @property
    def int8_float_layers(self) -> tuple[str, ...]:
        """The backbone's layers int8 leaves in float: the config's, else those the model's profile
        names with its verdict for this CPU's scheme (measured together), else none."""
        if self.config.int8_float is not None:
            return tuple(self.config.int8_float)
        from detector.profiles import int8_record_for

        record = int8_record_for(self)
        return tuple(record.get("float_layers", ())) if record else ()

    @property
    def nms_threshold(self) -> float:
        """The RoI head's per-class NMS IoU (config, else the model's own ``meta["nms_threshold"]``, else 0.5)."""
        if self.config.nms_threshold is not None:
            return self.config.nms_threshold
        return float(self.info.meta.get("nms_threshold", DEFAULT_NMS_THRESHOLD))

    @property
    def contained_threshold(self) -> float | None:
        """The share inside a higher box of its class above which a box is dropped (config, else the
        model's own ``meta["contained_threshold"]``, else None: off)."""
        if self.config.contained_threshold is not None:
            return self.config.contained_threshold
        return self.info.meta.get("contained_threshold")

    def _drop_contained(self, d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        keep = ~contained_in_higher(d["boxes"].float(), d["scores"].float(), d["labels"], self.contained_threshold)
        return {k: v[keep] for k, v in d.items()}

    def _to_detections(self, d: dict[str, torch.Tensor], classes: tuple[str, ...]) -> Detections:
        det = Detections(
            d["boxes"].float().cpu().numpy(),
            d["scores"].float().cpu().numpy(),
            d["labels"].cpu().numpy(),
            self.class_names,
        )
        return det.filter(classes=classes) if classes else det
