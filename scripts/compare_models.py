#!/usr/bin/env python3
"""Models side by side on what a new user sees first: the bundled clip.

Runs each model over every frame of the clip at its own default threshold (300 proposals, fp32) and
counts the boxes scoring ≥ 0.5 by class, among them the ones of classes that are not in the clip (an
animal or a ball: a paper bag called "bird", a stone "sheep"); then draws one frame with each model's
boxes, the first and the last model's panels side by side (every model is counted).

    python scripts/compare_models.py --model v3=v3.pt --model v6=v6.pt --model v7=assets/default_model.pt \\
        --frame 60 --out docs/clip_compare.jpg --json docs/clip_compare.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detector.train_data import MOVING  # noqa: E402

# classes the clip (a street and a lawn with people, cars and vans) has none of: no animal, no ball
NOT_IN_CLIP = MOVING


def frames(path: Path) -> list:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def run(name: str, weights: str, clip: list) -> tuple[dict, list]:
    from detector.config import DetectorConfig
    from detector.detector import Detector

    det = Detector(DetectorConfig(weights=weights, device="cpu", precision="fp32", proposals=300))
    per_class: dict[str, int] = {}
    shown = 0  # boxes of those classes at the model's own threshold: what the window shows by default
    results = []
    for image in clip:
        d = det.detect(image)[0]
        results.append(d)
        for score, label in zip(d.scores, d.labels, strict=True):
            if score >= 0.5:
                per_class[str(label)] = per_class.get(str(label), 0) + 1
            shown += int(score >= det.score_threshold and str(label) in NOT_IN_CLIP)
    not_in_clip = {c: n for c, n in per_class.items() if c in NOT_IN_CLIP}
    return {"weights": Path(weights).name, "threshold": det.score_threshold, "frames": len(clip),
            "boxes_0.5": dict(sorted(per_class.items(), key=lambda kv: -kv[1])),
            "not_in_clip_0.5": not_in_clip, "not_in_clip_total": sum(not_in_clip.values()),
            "not_in_clip_at_threshold": shown}, results


def main(argv: list[str] | None = None) -> int:
    import cv2
    import numpy as np

    from app.pipeline.render import draw_detections

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, metavar="NAME=WEIGHTS",
                   help="two or more; the first and the last are drawn")
    p.add_argument("--video", default=str(ROOT / "assets" / "sample.mp4"))
    p.add_argument("--frame", type=int, default=60, help="the frame drawn")
    p.add_argument("--out", default=str(ROOT / "docs" / "clip_compare.jpg"))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    models = [m.split("=", 1) for m in args.model]
    if len(models) < 2 or any(len(m) != 2 for m in models):
        raise SystemExit("--model NAME=WEIGHTS, twice or more")
    clip = frames(Path(args.video))
    if not 0 <= args.frame < len(clip):
        raise SystemExit(f"--frame {args.frame}: the clip has {len(clip)} frames")
    panels, report = [], {}
    for i, (name, weights) in enumerate(models):
        summary, results = run(name, weights, clip)
        report[name] = summary
        d = results[args.frame]
        shown = d[d.scores >= summary["threshold"]]
        panel = draw_detections(clip[args.frame], shown)
        cv2.putText(panel, f"{name} (score >= {summary['threshold']:g}): {len(shown)} boxes", (10, 28),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 0), 2, cv2.LINE_AA)
        if i in (0, len(models) - 1):
            panels.append(panel)
        print(f"{name}: {json.dumps(summary)}", flush=True)
    side = np.concatenate([panels[0], np.full((panels[0].shape[0], 8, 3), 255, np.uint8), panels[1]], axis=1)
    scale = 1600 / side.shape[1]
    side = cv2.resize(side, (1600, round(side.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    cv2.imwrite(args.out, cv2.cvtColor(side, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if args.json:
        Path(args.json).write_text(json.dumps({"frame": args.frame, "models": report}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
