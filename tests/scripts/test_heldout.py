"""tests/data/heldout: the hand-labelled held-out set is valid COCO, in step with its labels, and of the
kind the acceptance set is (people close to the camera, a street with a bus, animals)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import cv2
from pycocotools.coco import COCO

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import make_heldout  # noqa: E402

from detector.builders import COCO_CLASS_NAMES  # noqa: E402

HELDOUT = ROOT / "tests" / "data" / "heldout"
ANNOTATIONS = HELDOUT / "annotations.json"


def _coco() -> COCO:
    return COCO(str(ANNOTATIONS))


def test_pycocotools_loads_it_and_every_box_is_inside_its_image():
    coco = _coco()
    assert len(coco.getImgIds()) >= 41  # issue 18: at least 12 more than the 29 it had
    for image_id, info in coco.imgs.items():
        h, w = cv2.imread(str(HELDOUT / info["file_name"])).shape[:2]
        assert (w, h) == (info["width"], info["height"]), info["file_name"]
        assert max(w, h) <= 800
        for a in coco.imgToAnns[image_id]:
            x, y, bw, bh = a["bbox"]
            assert bw > 0 and bh > 0 and x >= 0 and y >= 0 and x + bw <= w and y + bh <= h, (info["file_name"], a)
            assert a["area"] == bw * bh and a["iscrowd"] in (0, 1)


def test_categories_are_cocos_own_ids_and_names():
    data = json.loads(ANNOTATIONS.read_text())
    for c in data["categories"]:
        assert COCO_CLASS_NAMES[c["id"]] == c["name"]
    assert len(data["categories"]) == 80


def test_enough_objects_and_people_close_to_the_camera():
    coco = _coco()
    objects = [a for a in coco.anns.values() if not a["iscrowd"]]
    assert len(objects) >= 30
    person = coco.getCatIds(catNms=["person"])[0]
    close = [a for a in objects if a["category_id"] == person
             and a["bbox"][3] >= 0.5 * coco.imgs[a["image_id"]]["height"]]
    assert len(close) >= 30  # what a webcam sees: issue 18 asked for more of them
    names = Counter(coco.cats[a["category_id"]]["name"] for a in objects)
    assert names["bus"] >= 1 and names["car"] >= 1
    assert sum(names[n] for n in ("dog", "cat", "horse", "bird", "sheep", "cow", "bear", "giraffe")) >= 5


def test_the_json_is_what_the_hand_labels_give():
    """annotations.json is written by make_heldout.py from LABELS: a label changed there must be rewritten."""
    assert json.loads(ANNOTATIONS.read_text()) == make_heldout.coco()


def test_the_set_stays_small():
    """43 pictures of at most 800 px, JPEG quality 90: 3.7 MB with the JSON files; room for a few more."""
    assert sum(p.stat().st_size for p in HELDOUT.iterdir()) < 4_500_000
