"""COCO AP by pycocotools: 1.0 for the ground truth itself, 0.0 for no detections, lower for shifted boxes."""

from __future__ import annotations

import numpy as np
import pytest

from detector.detections import Detections
from detector.evaluate import evaluate, format_metrics, ground_truth_as_detections, load_coco, recall

NAMES = ("__background__", "person", "car")


def _dataset() -> dict:
    rng = np.random.default_rng(1)
    images, anns = [], []
    for image_id in (1, 2, 3):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 640, "height": 480})
        for _ in range(3):
            x, y = rng.uniform(0, 500), rng.uniform(0, 300)
            w, h = rng.uniform(20, 100), rng.uniform(40, 150)
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(rng.integers(1, 3)),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]}


def test_ground_truth_scores_ap_one():
    coco = load_coco(_dataset())
    m = evaluate(coco, ground_truth_as_detections(coco, NAMES))
    assert m["AP"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0) and m["AP75"] == pytest.approx(1.0)
    assert set(m["per_class_AP50"]) == {"person", "car"}


def test_no_detections_score_zero():
    coco = load_coco(_dataset())
    m = evaluate(coco, {i: Detections.empty(NAMES) for i in coco.imgs})
    assert m["AP"] == 0.0 and m["AP50"] == 0.0 and m["detections"] == 0


def test_shifted_boxes_lose_ap75_but_keep_ap50():
    coco = load_coco(_dataset())
    gt = ground_truth_as_detections(coco, NAMES)
    shifted = {}
    for i, d in gt.items():
        b = d.boxes.copy()
        w = b[:, 2] - b[:, 0]
        b[:, [0, 2]] += 0.15 * w[:, None]  # IoU ≈ 0.74: a hit at 0.5, a miss at 0.75
        shifted[i] = Detections(b, d.scores, d.class_ids, NAMES)
    m = evaluate(coco, shifted)
    assert m["AP50"] == pytest.approx(1.0)
    assert m["AP75"] < 0.5
    assert all(v < 0.5 for v in m["per_class_AP75"].values())
    assert all(v == pytest.approx(1.0) for v in m["per_class_AP50"].values())


def test_predictions_of_unknown_classes_are_ignored_and_crowd_is_ignore():
    data = _dataset()
    data["annotations"][0]["iscrowd"] = 1
    coco = load_coco(data)
    gt = ground_truth_as_detections(coco, NAMES)
    # a detection exactly on the crowd box is neither a hit nor a false positive
    crowd = data["annotations"][0]
    x, y, w, h = crowd["bbox"]
    d = gt[crowd["image_id"]]
    gt[crowd["image_id"]] = Detections(np.vstack([d.boxes, [[x, y, x + w, y + h]]]), np.append(d.scores, 0.99),
                                       np.append(d.class_ids, crowd["category_id"]), NAMES)
    assert evaluate(coco, gt)["AP"] == pytest.approx(1.0)


def test_bad_json_is_named(tmp_path):
    with pytest.raises(ValueError, match="'annotations'"):
        load_coco({"images": [], "categories": []})
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_coco(bad)
    # a file that is not text (a picture given as --data): it was the bare codec error, naming no file
    bad.write_bytes(b"\xff\xd8\xff\xe0 a JPEG")
    with pytest.raises(ValueError, match=r"bad.json is not a UTF-8 JSON text \(invalid start byte at byte 0\)"):
        load_coco(bad)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(images=None), "has a NoneType for its 'images' list"),
    (lambda d: d["images"][1].pop("file_name"), r"images\[1\] has no 'file_name'"),
    (lambda d: d["images"][1].update(file_name=""), r"images\[1\] has file_name ''; expected a picture's path"),
    (lambda d: d["images"][0].update(file_name=7), r"images\[0\] has file_name 7"),
    (lambda d: d["images"][2].update(id="3"), r"images\[2\] has id '3'; ids are integers"),
    (lambda d: d["images"].append(dict(d["images"][0])), r"images\[3\] repeats id 1"),
    (lambda d: d["annotations"][4].update(category_id=9), r"annotations\[4\] has category_id 9, which no category has"),
    (lambda d: d["annotations"][0].update(image_id=7), r"annotations\[0\] has image_id 7, which no image has"),
    (lambda d: d["annotations"][2].update(bbox=[1, 2, 3]), r"annotations\[2\] has bbox \[1, 2, 3\]"),
    (lambda d: d["categories"][0].pop("name"), r"categories\[0\] has no 'name'"),
])
def test_a_broken_coco_entry_is_named(change, message):
    """Each of these was a bare KeyError/TypeError from pycocotools or the loaders (train, eval)."""
    data = _dataset()
    change(data)
    with pytest.raises(ValueError, match=message):
        load_coco(data)


def _recall_case() -> tuple[dict, dict]:
    """Ground truth and detections where the objects found are known by construction (see the comments)."""
    def ann(i, image, cat, box, crowd=0):
        x1, y1, x2, y2 = box
        return {"id": i, "image_id": image, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1), "iscrowd": crowd}

    p1, p2, p3 = (100, 100, 150, 200), (105, 100, 155, 200), (300, 100, 350, 200)
    car, crowd, p4, p5 = (400, 300, 500, 360), (10, 10, 60, 110), (50, 50, 100, 150), (200, 200, 260, 320)
    data = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in (1, 2, 3)],
            "annotations": [ann(1, 1, 1, p1), ann(2, 1, 1, p2), ann(3, 1, 1, p3), ann(4, 1, 2, car),
                            ann(5, 1, 1, crowd, crowd=1), ann(6, 2, 1, p4), ann(7, 3, 1, p5)],
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]}
    dets = {
        1: Detections(np.array([
            [100, 100, 155, 200],  # person 0.9 over p1 and p2 (IoU 0.91 with each): finds one of them only
            p3,                    # person 0.2 exactly on p3: below the score threshold, not found
            p3,                    # car 0.95 on p3: the wrong class finds no person
            crowd,                 # person 0.7 on the crowd box: crowd boxes are not objects to find
            [420, 300, 520, 360],  # car 0.5, 20 px off (IoU 80/120 = 0.67): finds the car
        ], np.float32), np.array([0.9, 0.2, 0.95, 0.7, 0.5]), np.array([1, 1, 2, 1, 2]), NAMES),
        # image 2: no entry — its person p4 is not found
        3: Detections(np.array([[226, 200, 286, 320]], np.float32), np.array([0.99]), np.array([1]), NAMES),
        # ↑ p5 moved 26 px: IoU 34/86 = 0.40, found at IoU 0.3 but not at 0.5
    }
    return data, dets


def test_recall_counts_objects_found_by_construction():
    data, dets = _recall_case()
    m = evaluate(load_coco(data), dets)
    # persons p1..p5 (the crowd box is not one): only the 0.9 detection finds one; the car is found
    assert m["per_class_found"] == {"car": [1, 1], "person": [1, 5]}
    assert m["found"] == 2 and m["objects"] == 6 and m["recall"] == pytest.approx(2 / 6)
    assert m["per_class_recall"]["person"] == pytest.approx(0.2)
    assert "persons 1/5" in format_metrics(m) and "(2/6" in format_metrics(m)
    # a looser IoU finds p5 too; a lower score threshold counts the 0.2 detection on p3
    assert recall(load_coco(data), dets, iou_threshold=0.3)["per_class_found"]["person"] == [2, 5]
    assert recall(load_coco(data), dets, score_threshold=0.1)["per_class_found"]["person"] == [2, 5]


def test_recall_is_greedy_by_score_and_one_to_one():
    """Two boxes side by side, two detections: the higher-scoring one takes the box it overlaps most,
    leaving the other box to the second detection; a third, duplicate detection finds nothing more."""
    data = {"images": [{"id": 1, "file_name": "1.jpg", "width": 640, "height": 480}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [100, 100, 50, 100], "area": 5000,
                             "iscrowd": 0},
                            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [130, 100, 50, 100], "area": 5000,
                             "iscrowd": 0}],
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]}
    coco = load_coco(data)
    # the 0.9 detection overlaps box 2 most (IoU 0.82 vs 0.33 with box 1); the 0.8 one overlaps box 2
    # (IoU 0.54) and box 1 (IoU 0.54 too): box 2 being taken, it finds box 1
    boxes = np.array([[125, 100, 175, 200], [115, 100, 165, 200], [125, 100, 175, 200]], np.float32)
    two = Detections(boxes[:2], np.array([0.9, 0.8]), np.array([1, 1]), NAMES)
    assert recall(coco, {1: two})["found"] == 2
    dup = Detections(boxes[[0, 2]], np.array([0.9, 0.85]), np.array([1, 1]), NAMES)
    assert recall(coco, {1: dup})["found"] == 1
    assert recall(load_coco({**data, "annotations": []}), {1: two}) == {
        "recall": 0.0, "found": 0, "objects": 0, "per_class_recall": {}, "per_class_found": {}}


def test_undefined_scores_read_n_a_not_zero():
    """Without ground truth AP and recall are undefined (no object to find), not 0.000 — a run that
    found nothing reads differently from a set with nothing to find."""
    unlabelled = {**_dataset(), "annotations": []}
    coco = load_coco(unlabelled)
    m = evaluate(coco, {i: Detections(np.array([[0, 0, 10, 10]]), [0.9], [1], NAMES) for i in coco.imgs})
    line = format_metrics(m)
    assert "AP n/a" in line and "AP50 n/a" in line and "0.000" not in line
    assert "recall@IoU0.5/score0.3 n/a (0/0)" in line
    coco = load_coco(_dataset())  # labelled, nothing found: AP and recall are a real 0
    line = format_metrics(evaluate(coco, {i: Detections.empty(NAMES) for i in coco.imgs}))
    assert "AP 0.000" in line and "n/a" not in line
