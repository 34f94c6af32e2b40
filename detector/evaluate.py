"""COCO AP of detections against a COCO-format ground truth, computed by pycocotools (never our own AP).

Predictions are matched to the ground truth's categories by class name, so a model with any label
map (COCO's 91, or our 7) can be scored on any COCO JSON. Ground-truth boxes marked ``iscrowd=1``
(the autolabeller's uncertain teacher boxes) are "ignore" regions: a detection on them is neither a
true nor a false positive.

Next to AP, the share of objects *found*: recall at IoU ≥ 0.5 of the detections with score ≥ 0.3
(the threshold a user runs with), over the non-crowd ground truth, overall and per class — greedy by
score, each detection taking at most one box of its class (the unmatched one it overlaps most) and
each box found at most once.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_iou

from detector.detections import Detections

RECALL_IOU = 0.5
RECALL_SCORE = 0.3


def load_coco(source: str | Path | dict) -> COCO:
    """A pycocotools ``COCO`` from a JSON file or an already loaded dict (quietly)."""
    coco = COCO()
    if isinstance(source, dict):
        dataset = source
    else:
        import json

        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"COCO JSON {path} does not exist")
        try:
            dataset = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path} is not a UTF-8 JSON text ({exc.reason} at byte {exc.start})") from None
    _check_coco(dataset)
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _check_coco(dataset) -> None:
    """The structure the loaders read, or a ``ValueError`` naming the first entry that breaks it (else
    pycocotools or the loaders failed later with a bare ``KeyError``/``TypeError``)."""
    if not isinstance(dataset, dict):
        raise ValueError("a COCO JSON is an object with images, annotations and categories, "
                         f"not a {type(dataset).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            what = "no" if key not in dataset else f"a {type(dataset[key]).__name__} for its"
            raise ValueError(f"COCO JSON has {what} {key!r} list (keys: {', '.join(dataset)})")
    ids: dict[str, set] = {}
    for key, needs in (("images", ("id", "file_name")), ("categories", ("id", "name")),
                       ("annotations", ("id", "image_id", "category_id", "bbox"))):
        seen = ids[key] = set()
        for i, entry in enumerate(dataset[key]):
            missing = [n for n in needs if not isinstance(entry, dict) or n not in entry]
            if missing:
                raise ValueError(f"COCO JSON {key}[{i}] has no {missing[0]!r}: {str(entry)[:80]}")
            if not isinstance(entry["id"], int) or isinstance(entry["id"], bool):
                raise ValueError(f"COCO JSON {key}[{i}] has id {entry['id']!r}; ids are integers")
            if entry["id"] in seen:
                raise ValueError(f"COCO JSON {key}[{i}] repeats id {entry['id']}")
            if key == "images" and not (isinstance(entry["file_name"], str) and entry["file_name"]):
                raise ValueError(f"COCO JSON images[{i}] has file_name {entry['file_name']!r}; "
                                 "expected a picture's path")
            seen.add(entry["id"])
    for i, a in enumerate(dataset["annotations"]):
        for field, key, one in (("image_id", "images", "image"), ("category_id", "categories", "category")):
            if a[field] not in ids[key]:
                raise ValueError(f"COCO JSON annotations[{i}] has {field} {a[field]!r}, which no {one} has")
        box = a["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise ValueError(f"COCO JSON annotations[{i}] has bbox {box!r}; expected [x, y, width, height]")


def coco_xyxy(anns: list[dict], dtype: type = np.float32) -> np.ndarray:
    """[N, 4] (x1, y1, x2, y2) pixels of COCO annotations (whose bbox is [x, y, width, height])."""
    return np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype).reshape(-1, 4)


def detections_to_results(coco: COCO, predictions: Mapping[int, Detections]) -> list[dict]:
    """COCO result rows ({image_id, category_id, bbox [x, y, w, h], score}) for the categories of
    ``coco``; detections of classes the ground truth does not have are dropped."""
    category_by_name = {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())}
    rows: list[dict] = []
    for image_id, det in predictions.items():
        if image_id not in coco.imgs:
            raise KeyError(f"prediction for image id {image_id}, which the ground truth does not have")
        for box, score, name in zip(det.boxes, det.scores, det.labels, strict=True):
            if name not in category_by_name:
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            rows.append({"image_id": int(image_id), "category_id": category_by_name[name],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return rows


def recall(coco: COCO, predictions: Mapping[int, Detections], iou_threshold: float = RECALL_IOU,
           score_threshold: float = RECALL_SCORE) -> dict:
    """The share of non-crowd ground-truth boxes found by a detection of their class with score ≥
    ``score_threshold`` at IoU ≥ ``iou_threshold``.

    Per image and class, detections are taken by descending score; each takes the unmatched box it
    overlaps most (if that IoU reaches the threshold), so one detection finds at most one box and a
    box is found at most once. Detections of classes the ground truth does not have are ignored.

    Returns {"recall": found / objects (0.0 without objects), "found", "objects",
    "per_class_recall": {name: recall}, "per_class_found": {name: [found, objects]}} for every class
    with ground truth.
    """
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    found: dict[str, int] = {}
    objects: dict[str, int] = {}
    for image_id in coco.imgs:
        anns = [a for a in coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        det = predictions.get(image_id)
        for name in sorted({names[a["category_id"]] for a in anns}):
            gt = [a for a in anns if names[a["category_id"]] == name]
            objects[name] = objects.get(name, 0) + len(gt)
            found.setdefault(name, 0)
            if det is None or len(det) == 0:
                continue
            mask = (np.asarray(det.labels) == name) & (det.scores >= score_threshold)
            if not mask.any():
                continue
            order = np.argsort(-det.scores[mask], kind="stable")
            boxes = torch.as_tensor(det.boxes[mask][order], dtype=torch.float64)
            gt_xyxy = torch.as_tensor(coco_xyxy(gt, np.float64))
            iou = box_iou(boxes, gt_xyxy)  # [D, G], detections by descending score
            taken = torch.zeros(len(gt), dtype=torch.bool)
            for row in iou:
                row = row.masked_fill(taken, -1.0)
                best = int(row.argmax())
                if row[best] >= iou_threshold:
                    taken[best] = True
            found[name] += int(taken.sum())
    total, hits = sum(objects.values()), sum(found.values())
    return {"recall": hits / total if total else 0.0, "found": hits, "objects": total,
            "per_class_recall": {n: found[n] / objects[n] for n in sorted(objects)},
            "per_class_found": {n: [found[n], objects[n]] for n in sorted(objects)}}


def evaluate(coco: COCO, predictions: Mapping[int, Detections], recall_iou: float = RECALL_IOU,
             recall_score: float = RECALL_SCORE) -> dict:
    """COCO box AP of ``predictions`` (image id → Detections in that image's pixels) on ``coco``,
    and the recall of :func:`recall`.

    Images of the ground truth without an entry in ``predictions`` count as having no detections.
    Returns {"AP", "AP50", "AP75", "per_class_AP50": {name: AP50}, "per_class_AP75", "per_class_AP",
    "images", "detections", "recall", "found", "objects", "per_class_recall", "per_class_found",
    "recall_iou", "recall_score"}; a class without ground truth is left out of the per-class tables.
    """
    found = {**recall(coco, predictions, recall_iou, recall_score), "recall_iou": recall_iou,
             "recall_score": recall_score}
    return {**_ap(coco, predictions), **found}


def _ap(coco: COCO, predictions: Mapping[int, Detections]) -> dict:
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    rows = detections_to_results(coco, predictions)
    present = sorted({a["category_id"] for a in coco.dataset["annotations"] if not a.get("iscrowd", 0)})
    empty = {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "per_class_AP50": {names[c]: 0.0 for c in present},
             "per_class_AP75": {names[c]: 0.0 for c in present}, "per_class_AP": {names[c]: 0.0 for c in present},
             "images": len(coco.imgs), "detections": 0}
    if not rows or not present:
        return empty
    with contextlib.redirect_stdout(io.StringIO()):
        results = coco.loadRes(rows)
        ev = COCOeval(coco, results, iouType="bbox")
        ev.params.imgIds = sorted(coco.imgs)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # precision: [T iou thresholds, R recall points, K categories, A areas, M max dets]
    precision = ev.eval["precision"]
    cat_index = {c: k for k, c in enumerate(ev.params.catIds)}

    def class_ap(cat: int, iou_index: slice | int) -> float:
        p = precision[iou_index, :, cat_index[cat], 0, -1]
        p = p[p > -1]
        return float(p.mean()) if p.size else 0.0

    return {
        "AP": max(float(ev.stats[0]), 0.0),
        "AP50": max(float(ev.stats[1]), 0.0),
        "AP75": max(float(ev.stats[2]), 0.0),
        "per_class_AP50": {names[c]: class_ap(c, 0) for c in present},
        "per_class_AP75": {names[c]: class_ap(c, 5) for c in present},  # iouThrs[5] = 0.75
        "per_class_AP": {names[c]: class_ap(c, slice(None)) for c in present},
        "images": len(coco.imgs),
        "detections": len(rows),
    }


def ground_truth_as_detections(coco: COCO, class_names: tuple[str, ...]) -> dict[int, Detections]:
    """The ground truth itself as score-1 detections (non-crowd boxes) — a sanity reference (AP 1.0)."""
    index = {n: i for i, n in enumerate(class_names)}
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    out: dict[int, Detections] = {}
    for image_id in coco.imgs:
        anns = [a for a in coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0) and names[a["category_id"]] in index]
        ids = np.array([index[names[a["category_id"]]] for a in anns], np.int64)
        out[image_id] = Detections(coco_xyxy(anns), np.ones(len(anns), np.float32), ids, class_names)
    return out


def share_text(value: float, defined: bool, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, or "n/a" where it is undefined (a share of nothing: AP or
    recall without a labelled object, precision without a box), so that it never reads as a 0."""
    return f"{value:.{digits}f}" if defined else "n/a"


def format_metrics(metrics: dict) -> str:
    """One line: AP / AP50 / AP75, the per-class AP50, and the recall (all objects, persons); "n/a"
    where the ground truth has no (non-crowd) object."""
    per_class = ", ".join(f"{k} {v:.3f}" for k, v in metrics["per_class_AP50"].items())
    labelled = bool(metrics["per_class_AP50"])  # a class per labelled object's class
    line = (f"AP {share_text(metrics['AP'], labelled)}  AP50 {share_text(metrics['AP50'], labelled)}"
            f"  AP75 {share_text(metrics['AP75'], labelled)}  (AP50 per class: {per_class or 'none'})")
    if "recall" in metrics:
        person = metrics["per_class_found"].get("person")
        found = share_text(metrics["recall"], metrics["objects"] > 0)
        line += (f"  recall@IoU{metrics['recall_iou']:g}/score{metrics['recall_score']:g} {found}"
                 f" ({metrics['found']}/{metrics['objects']}"
                 + (f"; persons {person[0]}/{person[1]}" if person else "") + ")")
    return line
