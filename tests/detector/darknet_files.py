"""Where the tests find the Darknet YOLOv3-tiny files, if ``make model`` has fetched them (tests never download)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names")


def darknet_dir() -> Path | None:
    """$FRCNN_DARKNET_DIR or .cache/darknet (filled by `make model`), when it holds all three files."""
    for candidate in (os.environ.get("FRCNN_DARKNET_DIR"), ROOT / ".cache" / "darknet"):
        if candidate and all((Path(candidate) / n).is_file() for n in NAMES):
            return Path(candidate)
    return None


needs_darknet = pytest.mark.skipif(darknet_dir() is None,
                                   reason="Darknet yolov3-tiny files absent (make model fetches them into .cache/darknet)")

# Hand-checked boxes (x1, y1, x2, y2) of two people, head to feet, in frame 0 of assets/sample.mp4
# (= vtest.avi frame 650): the man in black walking in the middle, and the woman in the foreground.
PEOPLE_FRAME0 = ((465.0, 223.0, 499.0, 314.0), (330.0, 372.0, 386.0, 517.0))
