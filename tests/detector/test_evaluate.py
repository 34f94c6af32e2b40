"""COCO AP by pycocotools: 1.0 for the ground truth itself, 0.0 for no detections, lower for shifted boxes."""

from __future__ import annotations

import numpy as np
import pytest

from detector.detections import Detections
from detector.evaluate import evaluate, ground_truth_as_detections, load_coco

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
