"""Precision and the false boxes by kind, on a hand-made picture whose every verdict is known."""

from __future__ import annotations

import numpy as np
import pytest

from detector.detections import Detections
from detector.evaluate import load_coco, recall
from detector.precision import KINDS, cover, false_boxes, format_precision, judge, per_picture_table

NAMES = ("__background__", "person", "tie", "tv", "car", "cat")
P, Q, TIE, IGNORE = (100, 100, 200, 400), (300, 100, 400, 400), (140, 200, 160, 260), (500, 50, 600, 200)


def _coco():
    def ann(i, image, cat, box, crowd=0):
        x1, y1, x2, y2 = box
        return {"id": i, "image_id": image, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1), "iscrowd": crowd}

    return load_coco({
        "images": [{"id": 1, "file_name": "desk.jpg", "width": 640, "height": 480},
                   {"id": 2, "file_name": "empty_hands.jpg", "width": 640, "height": 480}],
        "annotations": [ann(1, 1, 1, P), ann(2, 1, 1, Q), ann(3, 1, 2, TIE), ann(4, 1, 1, IGNORE, crowd=1),
                        ann(5, 2, 1, (10, 10, 100, 200))],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "tie"}, {"id": 3, "name": "tv"},
                       {"id": 4, "name": "car"}]})


# (box, score, class id, the verdict at score ≥ 0.3 and why)
CASE = [
    (P, 0.9, 1, "true"),                           # exactly on P
    ((102, 100, 200, 400), 0.8, 1, "duplicate"),   # IoU 0.98 with P, which the 0.9 box found
    ((120, 100, 180, 160), 0.7, 1, "part"),        # P's head: all of it inside P, IoU 0.12
    (TIE, 0.6, 3, "wrong_class"),                  # a 'tv' exactly on the labelled tie
    ((100, 100, 400, 400), 0.6, 1, "loose"),       # one box around P and Q (IoU 0.33 with each)
    ((0, 420, 80, 480), 0.55, 4, "background"),    # a 'car' where nothing is labelled
    ((510, 60, 590, 190), 0.5, 1, "ignored"),      # inside the ignore region of its class
    (Q, 0.4, 1, "true"),                           # finds Q, but only at score ≥ 0.3
    ((0, 0, 50, 50), 0.2, 1, None),                # below both thresholds
    ((300, 300, 350, 350), 0.95, 5, None),         # a 'cat': a class the ground truth does not have
]


def _predictions():
    boxes = np.array([c[0] for c in CASE], np.float32)
    return {1: Detections(boxes, np.array([c[1] for c in CASE]), np.array([c[2] for c in CASE]), NAMES)}


def test_each_kind_of_false_box_by_construction():
    labels = np.array([P, Q, TIE], float)
    kept = [c for c in CASE if c[3] is not None]
    verdicts = judge(labels, ["person", "person", "tie"], np.array([IGNORE], float), ["person"],
                     np.array([c[0] for c in kept], float), np.array([c[1] for c in kept]),
                     [NAMES[c[2]] for c in kept])
    assert verdicts == [c[3] for c in kept]


def test_precision_and_kinds_at_two_thresholds():
    coco, preds = _coco(), _predictions()
    low = false_boxes(coco, preds, 0.3)
    assert low["false_by_kind"] == {"duplicate": 1, "part": 1, "wrong_class": 1, "loose": 1, "background": 1}
    assert (low["true"], low["false"], low["ignored"]) == (2, 5, 1)
    assert low["precision"] == pytest.approx(2 / 7)
    # objects: P, Q, the tie (image 1) and one person in image 2, which has no detections at all
    assert (low["found"], low["objects"]) == (2, 4) and low["recall"] == pytest.approx(0.5)
    high = false_boxes(coco, preds, 0.5)
    assert (high["true"], high["false"], high["ignored"]) == (1, 5, 1)  # Q's 0.4 box is gone
    assert high["precision"] == pytest.approx(1 / 6)
    pics = {p["file"]: p for p in low["per_picture"]}
    assert pics["desk.jpg"] == {"image_id": 1, "file": "desk.jpg", "labelled": 3, "found": 2, "boxes": 8,
                                "ignored": 1, "false": 5, "false_by_kind": low["false_by_kind"]}
    assert pics["empty_hands.jpg"]["found"] == 0 and pics["empty_hands.jpg"]["false"] == 0
    # the objects found agree with the recall of detector.evaluate (the same greedy matching)
    for score in (0.3, 0.5):
        assert false_boxes(coco, preds, score)["found"] == recall(coco, preds, score_threshold=score)["found"]


def test_the_higher_score_takes_the_label_and_the_other_is_the_duplicate():
    labels = np.array([P], float)
    a, b = (100, 100, 200, 400), (104, 100, 204, 400)
    assert judge(labels, ["person"], np.zeros((0, 4)), [], np.array([a, b], float), np.array([0.6, 0.9]),
                 ["person", "person"]) == ["duplicate", "true"]
    # a box of another class on a labelled person is a wrong class, not a duplicate
    assert judge(labels, ["person"], np.zeros((0, 4)), [], np.array([a, b], float), np.array([0.9, 0.8]),
                 ["person", "tv"]) == ["true", "wrong_class"]


def test_cover_is_the_share_of_the_box_itself():
    got = cover(np.array([[0, 0, 10, 10], [5, 5, 15, 15]], float), np.array([[0, 0, 10, 10]], float))
    assert got[:, 0] == pytest.approx([1.0, 0.25])


def test_reports_read_as_a_line_and_a_table():
    coco, preds = _coco(), _predictions()
    reports = [false_boxes(coco, preds, s) for s in (0.3, 0.5)]
    line = format_precision(reports[0])
    assert "precision 0.29" in line and "1 wrong class" in line and "(2/4)" in line
    table = per_picture_table(reports).splitlines()
    assert len(table) == 2 + 2 + 1  # head, rule, two pictures, the total
    assert table[2] == "| desk.jpg | 3 | 2 | 5 (1/1/1/1/1) | 1 | 5 (1/1/1/1/1) |"
    assert table[-1].startswith("| **all** | 4 | 2 | 5 (")
    assert len(KINDS) == 5


def test_precision_without_boxes_and_recall_without_labels_read_n_a():
    """No box shown: precision is undefined (n/a), not 0.00; no labelled object: recall likewise."""
    coco = _coco()
    none = {i: Detections.empty(NAMES) for i in coco.imgs}
    line = format_precision(false_boxes(coco, none, 0.5))
    assert "precision n/a (0 true, 0 false" in line and "recall 0.00 (0/4)" in line
    unlabelled = load_coco({**coco.dataset, "annotations": []})
    one = {1: Detections(np.array([P], np.float32), [0.9], [1], NAMES)}
    line = format_precision(false_boxes(unlabelled, one, 0.5))
    assert "precision 0.00 (0 true, 1 false" in line and "recall n/a (0/0)" in line
