#!/usr/bin/env python3
"""Models against their labeller on the bundled clip: people and vehicles found, boxes matching none.

The clip has no hand labels; its labeller (YOLOv3-tiny + NanoDet-g fused, as ``make model`` runs it, boxes
≥ 0.5) stands in for them on every ``--step``-th frame. For each model (300 proposals, fp32, boxes ≥ 0.5;
car, truck and bus counted as one 'vehicle'): the labeller's boxes it finds at IoU ≥ 0.5 and its boxes
that match none. What a stricter NMS costs (two people side by side merged) shows as people not found.

    python scripts/clip_vs_labeller.py --model v6=.cache/v4/v6.pt --model v7=assets/default_model.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import compare_models  # noqa: E402
import heldout_check  # noqa: E402

KINDS = {"person": "person", "car": "vehicle", "truck": "vehicle", "bus": "vehicle"}


def kinds(det, score: float = 0.5) -> dict[str, torch.Tensor]:
    out: dict[str, list] = {}
    for box, s, label in zip(det.boxes, det.scores, det.labels, strict=True):
        if s >= score and label in KINDS:
            out.setdefault(KINDS[label], []).append(box)
    return {k: torch.tensor(np.array(v), dtype=torch.float32) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    from torchvision.ops import box_iou

    from detector import Detector, DetectorConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, metavar="NAME=WEIGHTS")
    p.add_argument("--video", default=str(ROOT / "assets" / "sample.mp4"))
    p.add_argument("--step", type=int, default=5, help="every STEP-th frame")
    args = p.parse_args(argv)
    frames = compare_models.frames(Path(args.video))[::args.step]
    teacher = heldout_check.build_labeller(0.5)
    ref = [kinds(teacher.detect_one(f)) for f in frames]
    print(f"labeller on {len(frames)} frames:", {k: sum(len(r.get(k, [])) for r in ref) for k in ("person", "vehicle")})
    for name, weights in (m.split("=", 1) for m in args.model):
        det = Detector(DetectorConfig(weights=weights, device="cpu", precision="fp32", proposals=300, score_threshold=0.3))
        found = {k: [0, 0, 0] for k in ("person", "vehicle")}
        for frame, want in zip(frames, ref, strict=True):
            got = kinds(det.detect([frame])[0])
            for k, row in found.items():
                g, t = got.get(k, torch.zeros(0, 4)), want.get(k, torch.zeros(0, 4))
                iou = box_iou(t, g) if len(t) and len(g) else None
                row[0] += int((iou.max(1).values >= 0.5).sum()) if iou is not None else 0
                row[1] += len(t)
                row[2] += int((iou.max(0).values < 0.5).sum()) if iou is not None else len(g)
        print(name, "; ".join(f"{k}: found {a}/{b}, {c} boxes matching none" for k, (a, b, c) in found.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
