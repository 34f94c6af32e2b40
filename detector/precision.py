"""Precision and the false boxes by kind: what a detector gets wrong, not only what it finds.

A detector judged by recall alone learns to box every part of a person; this module counts every
box it shows a user. Per picture and score threshold, detections of classes the ground truth knows
are taken by descending score (as :func:`detector.evaluate.recall` takes them):

1. **true**: it takes the unmatched label of its class that it overlaps most, at IoU ≥ ``iou``
   (each label is found at most once);
2. **ignored**: ≥ ``IGNORE_COVER`` of its area lies in an ignore region (``iscrowd=1``) of its class —
   COCO's own rule; it is neither true nor false.

Every other detection is a **false box**, of the first kind that fits:

- ``duplicate``: IoU ≥ ``iou`` with a label of its class that a higher-scoring box already found;
- ``part``: ≥ ``PART_COVER`` of its area inside one label (or ignore region) of its class — a head,
  a torso, a hand of a labelled person;
- ``wrong_class``: IoU ≥ ``iou`` with a label or ignore region of another class (a tie called 'tv');
- ``loose``: IoU ≥ ``LOOSE_IOU`` with a label of its class but none of the above (a box around two
  people, or one shifted by half its width);
- ``background``: none of the above — nothing labelled there.

``duplicate`` + ``part`` are the boxes on a labelled object that is already boxed or boxed in pieces.
Precision = true / (true + false).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from torchvision.ops import box_iou

from detector.detections import Detections
from detector.evaluate import coco_xyxy, share_text

KINDS = ("duplicate", "part", "wrong_class", "loose", "background")
MATCH_IOU = 0.5
PART_COVER = 0.7
IGNORE_COVER = 0.5
LOOSE_IOU = 0.1


def cover(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """[D, R]: the share of each box's own area (``boxes`` [D, 4] x1y1x2y2) inside each region [R, 4]."""
    if not len(boxes) or not len(regions):
        return np.zeros((len(boxes), len(regions)))
    lt = np.maximum(boxes[:, None, :2], regions[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], regions[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None).prod(axis=1)
    return inter / np.maximum(area, 1e-9)[:, None]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    return box_iou(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)).numpy()


def judge(labels: np.ndarray, label_names: Sequence[str], regions: np.ndarray, region_names: Sequence[str],
          boxes: np.ndarray, scores: np.ndarray, names: Sequence[str], iou: float = MATCH_IOU) -> list[str]:
    """The verdict on each detection of one picture: "true", "ignored" or one of ``KINDS``.

    Args:
        labels: [G, 4] labelled objects (x1, y1, x2, y2), absolute pixels; ``label_names`` [G] their classes.
        regions: [R, 4] ignore regions; ``region_names`` [R] their classes.
        boxes, scores, names: [D] the detections (already cut at the score threshold).
    Returns a list of D verdicts in the detections' own order.
    """
    labels, regions, boxes = (np.asarray(a, np.float64).reshape(-1, 4) for a in (labels, regions, boxes))
    label_names, region_names, names = (np.asarray(n, dtype=object) for n in (label_names, region_names, names))
    iou_l, iou_r = _iou(boxes, labels), _iou(boxes, regions)
    cover_l, cover_r = cover(boxes, labels), cover(boxes, regions)
    verdicts = [""] * len(boxes)
    taken = np.zeros(len(labels), bool)
    for d in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        same_l, same_r = label_names == names[d], region_names == names[d]
        free = np.where(same_l & ~taken, iou_l[d], -1.0)
        if len(free) and free.max() >= iou:
            taken[int(free.argmax())] = True
            verdicts[d] = "true"
        elif (cover_r[d] * same_r >= IGNORE_COVER).any():
            verdicts[d] = "ignored"
        elif (iou_l[d] * (same_l & taken) >= iou).any():
            verdicts[d] = "duplicate"
        elif (cover_l[d] * same_l >= PART_COVER).any() or (cover_r[d] * same_r >= PART_COVER).any():
            verdicts[d] = "part"
        elif (iou_l[d] * ~same_l >= iou).any() or (iou_r[d] * ~same_r >= iou).any():
            verdicts[d] = "wrong_class"
        elif (iou_l[d] * same_l >= LOOSE_IOU).any():
            verdicts[d] = "loose"
        else:
            verdicts[d] = "background"
    return verdicts


def false_boxes(coco: COCO, predictions: Mapping[int, Detections], score_threshold: float,
                iou: float = MATCH_IOU) -> dict:
    """Precision and false boxes by kind of the detections scoring ≥ ``score_threshold``.

    Returns {"score", "iou", "precision" (0.0 without boxes), "true", "false", "ignored",
    "false_by_kind": {kind: n}, "found", "objects", "recall", "per_picture": [{"image_id", "file",
    "labelled", "found", "boxes", "false", "false_by_kind"}]} — pictures in image-id order.
    """
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    known = set(names.values())
    per_picture = []
    for image_id in sorted(coco.imgs):
        anns = coco.imgToAnns.get(image_id, [])
        objs = [a for a in anns if not a.get("iscrowd", 0)]
        crowd = [a for a in anns if a.get("iscrowd", 0)]
        det = predictions.get(image_id)
        if det is None or not len(det):
            keep = np.zeros(0, bool)
            det_names: list[str] = []
        else:
            det_names = list(det.labels)
            keep = (det.scores >= score_threshold) & np.array([n in known for n in det_names], bool)
        verdicts = judge(coco_xyxy(objs, np.float64), [names[a["category_id"]] for a in objs],
                         coco_xyxy(crowd, np.float64), [names[a["category_id"]] for a in crowd],
                         det.boxes[keep] if keep.any() else np.zeros((0, 4)),
                         det.scores[keep] if keep.any() else np.zeros(0),
                         [n for n, k in zip(det_names, keep, strict=True) if k], iou)
        kinds = {k: verdicts.count(k) for k in KINDS}
        per_picture.append({"image_id": image_id, "file": coco.imgs[image_id].get("file_name", str(image_id)),
                            "labelled": len(objs), "found": verdicts.count("true"), "boxes": len(verdicts),
                            "ignored": verdicts.count("ignored"), "false": sum(kinds.values()),
                            "false_by_kind": kinds})
    true = sum(p["found"] for p in per_picture)
    false = sum(p["false"] for p in per_picture)
    objects = sum(p["labelled"] for p in per_picture)
    return {"score": score_threshold, "iou": iou, "precision": true / (true + false) if true + false else 0.0,
            "true": true, "false": false, "ignored": sum(p["ignored"] for p in per_picture),
            "false_by_kind": {k: sum(p["false_by_kind"][k] for p in per_picture) for k in KINDS},
            "found": true, "objects": objects, "recall": true / objects if objects else 0.0,
            "per_picture": per_picture}


def format_precision(report: dict) -> str:
    """One line: precision, true and false boxes by kind, recall ("n/a": no box, no labelled object)."""
    kinds = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in report["false_by_kind"].items())
    precision = share_text(report["precision"], report["true"] + report["false"] > 0, 2)
    found = share_text(report["recall"], report["objects"] > 0, 2)
    return (f"score ≥ {report['score']:g}: precision {precision} ({report['true']} true, "
            f"{report['false']} false: {kinds}; {report['ignored']} on ignore regions), "
            f"recall {found} ({report['found']}/{report['objects']}) at IoU {report['iou']:g}")


def per_picture_table(reports: Sequence[dict]) -> str:
    """A Markdown table, one row per picture: labelled objects, then per threshold the objects found and
    the false boxes as "total (duplicate/part/wrong class/loose/background)"."""
    head = ["picture", "labelled"]
    for r in reports:
        head += [f"found ≥ {r['score']:g}", f"false ≥ {r['score']:g} (dup/part/class/loose/bg)"]

    def false_cell(p: dict) -> str:
        return f"{p['false']} ({'/'.join(str(p['false_by_kind'][k]) for k in KINDS)})"

    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, pic in enumerate(reports[0]["per_picture"]):
        cells = [pic["file"], str(pic["labelled"])]
        for r in reports:
            p = r["per_picture"][i]
            cells += [str(p["found"]), false_cell(p)]
        rows.append("| " + " | ".join(cells) + " |")
    total = ["**all**", str(reports[0]["objects"])]
    for r in reports:
        total += [str(r["found"]), false_cell(r)]
    rows.append("| " + " | ".join(total) + " |")
    return "\n".join(rows)
