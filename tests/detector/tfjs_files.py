"""Where the tests find NanoDet's and CenterNet's TF.js files, if ``make teacher`` has fetched them (tests never download)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("nanodet.json", "nanodet.bin", "centernet.json", "centernet.bin")
REFERENCE = ROOT / "tests" / "data" / "tfjs_reference.npz"  # made by scripts/make_tfjs_fixture.py (TF.js itself)


def tfjs_dir() -> Path | None:
    """$FRCNN_TFJS_DIR or .cache/tfjs (filled by `make teacher`), when it holds all four files."""
    for candidate in (os.environ.get("FRCNN_TFJS_DIR"), ROOT / ".cache" / "tfjs"):
        if candidate and all((Path(candidate) / n).is_file() for n in NAMES):
            return Path(candidate)
    return None


def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in data.files}


needs_tfjs = pytest.mark.skipif(tfjs_dir() is None,
                                reason="NanoDet/CenterNet TF.js files absent (make teacher fetches them into .cache/tfjs)")
