"""Weighted boxes fusion of several teachers' detections (ensemble-boxes)."""

from __future__ import annotations

import numpy as np
import pytest

from detector.detections import Detections
from detector.fusion import FusedTeacher, fuse_detections
from tests.matching import assert_same_detections

pytest.importorskip("ensemble_boxes")

NAMES = ("__background__", "person", "bicycle", "car")


def _dets(boxes, scores, ids, names=NAMES) -> Detections:
    return Detections(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(ids), names)


def test_fusing_two_identical_box_sets_returns_them():
    a = _dets([[10, 20, 50, 100], [200, 50, 260, 90], [30, 40, 70, 120]], [0.9, 0.5, 0.7], [1, 3, 1])
    fused = fuse_detections([a, a], (240, 320))
    # the fusion is another compute path: paired by class and IoU, not by row order
    m = assert_same_detections(fused, a, iou=0.999, score_atol=1e-6, what="fused vs its input")
    assert len(fused) == len(a) == len(m.pairs) and fused.class_names == NAMES


def test_agreement_raises_confidence_and_boxes_are_averaged():
    yolo = _dets([[10, 20, 50, 100], [200, 50, 260, 90]], [0.8, 0.6], [1, 3])
    nano = _dets([[14, 20, 54, 100]], [0.8], [1])  # the same person, 4 px to the right; no car
    fused = fuse_detections([yolo, nano], (240, 320))
    person = fused[np.array(fused.labels) == "person"]
    car = fused[np.array(fused.labels) == "car"]
    assert len(person) == 1 and person.boxes[0].tolist() == pytest.approx([12, 20, 52, 100], abs=1e-3)
    assert person.scores[0] == pytest.approx(0.8)
    assert car.scores[0] == pytest.approx(0.3)  # found by one of two teachers: half its score (conf_type avg)
    weighted = fuse_detections([yolo, nano], (240, 320), weights=[3, 1])
    assert weighted[np.array(weighted.labels) == "car"].scores[0] == pytest.approx(0.45)


def test_classes_are_matched_by_name_and_empty_inputs_are_fine():
    other = ("__background__", "car", "person", "dog")
    a = _dets([[10, 20, 50, 100]], [0.9], [1])  # person in NAMES
    b = _dets([[10, 20, 50, 100], [0, 0, 30, 30]], [0.9, 0.8], [2, 3], other)  # person and dog in `other`
    fused = fuse_detections([a, b], (240, 320))
    assert fused.class_names == (*NAMES, "dog")
    assert sorted(fused.labels) == ["dog", "person"]
    assert fused[np.array(fused.labels) == "person"].scores[0] == pytest.approx(0.9)
    empty = fuse_detections([Detections.empty(NAMES), Detections.empty(NAMES)], (240, 320))
    assert len(empty) == 0
    with pytest.raises(ValueError, match="2 weights for 1 teachers"):
        fuse_detections([a], (240, 320), weights=[1, 2])


class Stub:
    class_names = NAMES
    sizes = (416,)

    def __init__(self, dets: Detections) -> None:
        self.dets = dets

    def detect_one(self, frame):
        return self.dets


def test_fused_teacher_runs_every_teacher():
    a = _dets([[10, 20, 50, 100]], [0.9], [1])
    b = _dets([[200, 50, 260, 90]], [0.6], [3])
    teacher = FusedTeacher([Stub(a), Stub(b)], iou_thr=0.5)
    det = teacher.detect_one(np.zeros((240, 320, 3), np.uint8))
    assert sorted(det.labels) == ["car", "person"] and det.scores.tolist() == pytest.approx([0.45, 0.3])
    assert teacher.sizes == (416,) and "fused by WBF" in teacher.description
