"""Fuse several teachers' detections of one frame with weighted boxes fusion (Solovyev et al. 2021),
as implemented by the ``ensemble-boxes`` package (MIT; a build-time dependency, extra ``model``).

WBF clusters same-class boxes of all teachers whose IoU exceeds ``iou_thr`` and replaces each cluster
by the score-weighted mean box. With ``conf_type="avg"`` the fused score is the cluster's mean score
(teacher weights applied) times min(teachers, boxes in the cluster) / Σ weights: a box that only one
of two equally weighted teachers found keeps half its score — agreement raises confidence, which is
what the two label thresholds of ``run.py autolabel`` then act on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detector.detections import Detections

CONF_TYPES = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")


def fuse_detections(detections: Sequence[Detections], image_size: tuple[int, int], weights: Sequence[float] | None = None,
                    iou_thr: float = 0.55, skip_box_thr: float = 0.0, conf_type: str = "avg") -> Detections:
    """Weighted boxes fusion of one frame's detections by several teachers.

    Args:
        detections: one ``Detections`` per teacher; classes are matched by name (the output label map
            is the first one's, extended by names only later ones have).
        image_size: (height, width) of the frame; boxes are normalised by it for WBF and mapped back.
        weights: one weight per teacher (default: equal).
        iou_thr: IoU above which same-class boxes are fused.
        skip_box_thr: boxes scoring below this are ignored.
        conf_type: how cluster scores combine (``ensemble_boxes.weighted_boxes_fusion``): one of ``CONF_TYPES``.
    Returns:
        the fused ``Detections``, best first: boxes float32 [N, 4] (x1, y1, x2, y2) in frame pixels.
    """
    from ensemble_boxes import weighted_boxes_fusion

    if not detections:
        raise ValueError("fuse_detections needs the detections of at least one teacher")
    if weights is not None and len(weights) != len(detections):
        raise ValueError(f"{len(weights)} weights for {len(detections)} teachers")
    if conf_type not in CONF_TYPES:
        raise ValueError(f"conf_type {conf_type!r} must be one of {CONF_TYPES}")
    names = list(detections[0].class_names)
    for d in detections[1:]:
        names += [n for n in d.class_names if n not in names]
    index = {n: i for i, n in enumerate(names)}
    h, w = image_size
    scale = np.array([w, h, w, h], np.float32)
    boxes, scores, labels = [], [], []
    for d in detections:
        boxes.append(np.clip(d.boxes / scale, 0.0, 1.0).tolist())
        scores.append(d.scores.tolist())
        labels.append([index[d.class_names[c]] for c in d.class_ids])
    if not any(scores):
        return Detections.empty(names)
    fused_boxes, fused_scores, fused_labels = weighted_boxes_fusion(
        boxes, scores, labels, weights=None if weights is None else list(weights), iou_thr=iou_thr,
        skip_box_thr=skip_box_thr, conf_type=conf_type)
    order = np.argsort(-fused_scores, kind="stable")
    return Detections((fused_boxes[order] * scale).astype(np.float32), fused_scores[order].astype(np.float32),
                      fused_labels[order].astype(np.int64), tuple(names))


class FusedTeacher:
    """Several teachers as one: ``detect_one`` runs each and fuses them by ``fuse_detections``.

    ``class_names`` is the union of the teachers' label maps (the first one's order first)."""

    def __init__(self, teachers: Sequence, weights: Sequence[float] | None = None, iou_thr: float = 0.55,
                 skip_box_thr: float = 0.0, conf_type: str = "avg") -> None:
        if not teachers:
            raise ValueError("FusedTeacher needs at least one teacher")
        if weights is not None and len(weights) != len(teachers):
            raise ValueError(f"{len(weights)} weights for {len(teachers)} teachers")
        if conf_type not in CONF_TYPES:
            raise ValueError(f"conf_type {conf_type!r} must be one of {CONF_TYPES}")
        self.teachers = list(teachers)
        self.weights = None if weights is None else [float(x) for x in weights]
        self.iou_thr, self.skip_box_thr, self.conf_type = float(iou_thr), float(skip_box_thr), conf_type
        names = list(self.teachers[0].class_names)
        for t in self.teachers[1:]:
            names += [n for n in t.class_names if n not in names]
        self.class_names: tuple[str, ...] = tuple(names)
        self.sizes = tuple(sorted({s for t in self.teachers for s in getattr(t, "sizes", ())}))
        self.description = " + ".join(getattr(t, "description", type(t).__name__) for t in self.teachers) + \
            f", fused by WBF (iou {self.iou_thr}, conf {conf_type}, weights {self.weights or 'equal'})"

    def detect_one(self, frame: np.ndarray) -> Detections:
        """Fused detections of one uint8 HxWx3 frame (each teacher's own channel order)."""
        parts = [t.detect_one(frame) for t in self.teachers]
        return fuse_detections(parts, frame.shape[:2], self.weights, self.iou_thr, self.skip_box_thr, self.conf_type)

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        return [self.detect_one(f) for f in frames]
