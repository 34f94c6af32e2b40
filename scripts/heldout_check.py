#!/usr/bin/env python3
"""Are the held-out labels complete? The labeller's confident boxes that no label explains.

Precision is only as honest as the labels: a real object left unlabelled turns every detector's right
box on it into a 'background' false box. So the labeller that made v3's training labels (YOLOv3-tiny +
NanoDet-g fused, as ``make model`` runs it) is run on every held-out picture, and its boxes scoring ≥
``SCORE`` are cached in ``tests/data/heldout/labeller_boxes.json`` (tests read the cache offline). A cached
box is *explained* when it lies on a label or ignore region (IoU ≥ 0.5, any class — a wrong class is
the labeller's error, not a missing label) or ≥ 50 % inside an ignore region; every other one must be
listed, after a look at the picture, in ``make_heldout.CHECKED`` (class, box, why it is no object to
label) — or the picture's labels are incomplete.

    python scripts/heldout_check.py            # run the labeller (needs make teacher), write the cache, list
    python scripts/heldout_check.py --cached   # list from the cache only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

HELDOUT = ROOT / "tests" / "data" / "heldout"
CACHE = HELDOUT / "labeller_boxes.json"
SCORE = 0.5
LABELLER = {"teachers": ("yolo", "nanodet"), "yolo_sizes": (416, 608), "nanodet_sizes": (416, 608),
            "weights": (1.0, 2.0), "conf_type": "max", "iou_thr": 0.55}


def build_labeller(score: float = SCORE):
    """The labeller that made the training labels (LABELLER), keeping boxes scoring ≥ ``score``."""
    from app.jobs.teachers import build_teacher

    return build_teacher(LABELLER["teachers"], score, yolo_sizes=LABELLER["yolo_sizes"],
                         nanodet_sizes=LABELLER["nanodet_sizes"], weights=LABELLER["weights"],
                         iou_thr=LABELLER["iou_thr"], conf_type=LABELLER["conf_type"],
                         darknet_dir=ROOT / ".cache" / "darknet", tfjs_dir=ROOT / ".cache" / "tfjs")


def run_labeller(annotations: dict) -> dict:
    """{file name: [[class, score, x1, y1, x2, y2], ...]} of the labeller's boxes scoring ≥ SCORE."""
    import cv2

    teacher = build_labeller()
    out = {}
    for info in annotations["images"]:
        bgr = cv2.imread(str(HELDOUT / info["file_name"]), cv2.IMREAD_COLOR)
        det = teacher.detect_one(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        out[info["file_name"]] = [[name, round(float(s), 3), *(round(float(v), 1) for v in box)]
                                  for box, s, name in zip(det.boxes, det.scores, det.labels, strict=True) if s >= SCORE]
    return out


def unexplained(annotations: dict, boxes: dict) -> dict[str, list[list]]:
    """{file: [cached boxes that no label or ignore region explains]} (see the module docstring)."""
    from detector.precision import _iou, cover

    by_image: dict[int, list[dict]] = {}
    for a in annotations["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    out = {}
    for info in annotations["images"]:
        anns = by_image.get(info["id"], [])
        xyxy = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                         for a in anns], float).reshape(-1, 4)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)
        rows = boxes.get(info["file_name"], [])
        det = np.array([r[2:6] for r in rows], float).reshape(-1, 4)
        iou, inside = _iou(det, xyxy), cover(det, xyxy)
        left = [r for r, i, c in zip(rows, iou, inside, strict=True) if not ((i >= 0.5).any() or (c[crowd] >= 0.5).any())]
        if left:
            out[info["file_name"]] = left
    return out


def unchecked(annotations: dict, boxes: dict, checked: dict[str, list[tuple]]) -> dict[str, list[list]]:
    """The unexplained boxes that ``checked`` (stem → [(class, x1, y1, x2, y2, why)]) does not list
    (same class, IoU ≥ 0.7 with the listed box)."""
    from detector.precision import _iou

    out = {}
    for file, rows in unexplained(annotations, boxes).items():
        listed = [c for c in checked.get(Path(file).stem, [])]
        left = []
        for r in rows:
            same = np.array([c[1:5] for c in listed if c[0] == r[0]], float).reshape(-1, 4)
            if not (_iou(np.array([r[2:6]], float), same) >= 0.7).any():
                left.append(r)
        if left:
            out[file] = left
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cached", action="store_true", help="use the cached boxes, do not run the labeller")
    args = p.parse_args(argv)
    import make_heldout

    annotations = json.loads((HELDOUT / "annotations.json").read_text())
    if args.cached:
        boxes = json.loads(CACHE.read_text())["boxes"]
    else:
        boxes = run_labeller(annotations)
        CACHE.write_text(json.dumps({"labeller": {k: list(v) if isinstance(v, tuple) else v for k, v in LABELLER.items()},
                                     "score": SCORE, "boxes": boxes}, indent=1))
        print(f"{sum(len(v) for v in boxes.values())} labeller boxes ≥ {SCORE} on {len(boxes)} pictures → {CACHE}")
    left = unchecked(annotations, boxes, make_heldout.CHECKED)
    for file, rows in left.items():
        for r in rows:
            print(f"{file}: {r[0]} {r[1]:.2f} at {r[2:6]} — no label, no ignore region, not in make_heldout.CHECKED")
    print(f"{sum(len(v) for v in left.values())} unexplained box(es)")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
