"""Are the held-out labels complete? Every picture labelled (or marked empty), ignore regions well-formed,
and every confident box of the labeller (cached by scripts/heldout_check.py) explained by a label, an
ignore region or a checked entry — precision is only as honest as the labels."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import heldout_check  # noqa: E402
import make_heldout  # noqa: E402

from detector.precision import _iou  # noqa: E402

ANNOTATIONS = json.loads((heldout_check.HELDOUT / "annotations.json").read_text())
CACHED = json.loads(heldout_check.CACHE.read_text())


def _by_image(data: dict) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {i["id"]: [] for i in data["images"]}
    for a in data["annotations"]:
        out[a["image_id"]].append(a)
    return out


def test_every_picture_has_a_label_or_an_explicit_empty_mark():
    for info in ANNOTATIONS["images"]:
        labelled = [a for a in _by_image(ANNOTATIONS)[info["id"]] if not a["iscrowd"]]
        assert labelled or info.get("empty") is True, f"{info['file_name']}: no label and no 'empty' mark"


def test_ignore_regions_are_well_formed():
    names = {c["id"]: c["name"] for c in ANNOTATIONS["categories"]}
    for info in ANNOTATIONS["images"]:
        anns = _by_image(ANNOTATIONS)[info["id"]]
        for r in (a for a in anns if a["iscrowd"]):
            x, y, w, h = r["bbox"]
            assert w >= 4 and h >= 4 and r["category_id"] in names, (info["file_name"], r)
            # an ignore region that repeats a label of its class would hide that label's duplicates
            same = [a for a in anns if not a["iscrowd"] and a["category_id"] == r["category_id"]]
            xyxy = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                             for a in same], float).reshape(-1, 4)
            assert not (_iou(np.array([[x, y, x + w, y + h]], float), xyxy) >= 0.9).any(), (info["file_name"], r)


def test_the_labeller_cache_covers_every_picture_and_only_them():
    assert set(CACHED["boxes"]) == {i["file_name"] for i in ANNOTATIONS["images"]}, \
        "pictures changed: rerun scripts/heldout_check.py (needs make teacher)"
    assert CACHED["score"] == heldout_check.SCORE and sum(map(len, CACHED["boxes"].values())) >= 30


def test_every_confident_labeller_box_is_a_label_an_ignore_region_or_checked():
    left = heldout_check.unchecked(ANNOTATIONS, CACHED["boxes"], make_heldout.CHECKED)
    assert not left, f"labelled incompletely (or not yet looked at): {left}"


def test_every_checked_entry_still_answers_a_labeller_box():
    open_boxes = heldout_check.unexplained(ANNOTATIONS, CACHED["boxes"])
    for stem, entries in make_heldout.CHECKED.items():
        rows = open_boxes.get(f"{stem}.jpg", [])
        for name, *box, why in entries:
            hits = [r for r in rows if r[0] == name and _iou(np.array([r[2:6]], float), np.array([box], float))[0, 0] >= 0.7]
            assert hits and why, f"{stem}: checked {name} {box} answers no unexplained labeller box"


def test_a_missing_label_is_found():
    """Drop the labels of each picture in turn: the labeller's boxes on those objects are listed."""
    explained = 0
    for info in ANNOTATIONS["images"]:
        if not CACHED["boxes"][info["file_name"]]:
            continue
        data = copy.deepcopy(ANNOTATIONS)
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] != info["id"]]
        left = heldout_check.unchecked(data, CACHED["boxes"], make_heldout.CHECKED)
        explained += len(left.get(info["file_name"], []))
    assert explained >= 30  # most of the labeller's confident boxes sit on labelled objects
