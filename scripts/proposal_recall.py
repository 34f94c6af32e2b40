#!/usr/bin/env python3
"""Where a model loses the objects of a COCO set: the RPN (no proposal near the object) or the RoI
head (a proposal was there, but no final box of any class is). For each ground-truth box: the best IoU
of the RPN's proposals and of the final detections (any class, score ≥ --score).

    python scripts/proposal_recall.py --weights assets/default_model.pt --data tests/data/heldout/annotations.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(weights: str, data: str | Path, proposals: int = 300, score: float = 0.05) -> dict:
    """{"objects": N, "proposals": [found at IoU ≥ 0.5, ≥ 0.7], "final": [same for the final boxes]}."""
    import cv2
    import torch
    from torchvision.ops import box_iou

    from detector.config import DetectorConfig
    from detector.detector import Detector
    from detector.evaluate import load_coco

    torch.set_num_threads(2)
    detector = Detector(DetectorConfig(weights=str(weights), device="cpu", precision="fp32",
                                       proposals=proposals, score_threshold=score))
    # the proposals of the detector's own pass (its knobs, resize and precision), caught on the way
    caught = {}

    def catch(module, inputs, output):
        caught["proposals"], caught["size"] = output[0][0], inputs[0].image_sizes[0]

    hook = detector.model.rpn.register_forward_hook(catch)
    coco = load_coco(Path(data))
    proposal_iou, final_iou = [], []
    try:
        for image_id, info in sorted(coco.imgs.items()):
            gt = [a["bbox"] for a in coco.imgToAnns[image_id] if not a.get("iscrowd")]
            if not gt:
                continue
            rgb = cv2.cvtColor(cv2.imread(str(Path(data).parent / info["file_name"])), cv2.COLOR_BGR2RGB)
            final = torch.from_numpy(detector.detect([rgb], timing=False)[0].boxes)
            (h, w), (rh, rw) = rgb.shape[:2], caught["size"]
            boxes = caught["proposals"].float() * torch.tensor([w / rw, h / rh, w / rw, h / rh])
            truth = torch.tensor([[bx, by, bx + bw, by + bh] for bx, by, bw, bh in gt], dtype=torch.float32)
            proposal_iou += box_iou(truth, boxes).max(1).values.tolist()
            final_iou += box_iou(truth, final).max(1).values.tolist() if len(final) else [0.0] * len(gt)
    finally:
        hook.remove()

    def found(ious: list[float]) -> list[int]:
        return [sum(v >= 0.5 for v in ious), sum(v >= 0.7 for v in ious)]

    return {"objects": len(proposal_iou), "proposals": found(proposal_iou), "final": found(final_iou),
            "score": score, "proposal_count": proposals}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="default")
    p.add_argument("--data", default=str(ROOT / "tests" / "data" / "heldout" / "annotations.json"))
    p.add_argument("--proposals", type=int, default=300)
    p.add_argument("--score", type=float, default=0.05)
    args = p.parse_args(argv)
    m = measure(args.weights, args.data, args.proposals, args.score)
    n = m["objects"]
    for name, (at5, at7) in (("RPN proposals", m["proposals"]),
                             (f"final boxes (any class, score ≥ {args.score:g})", m["final"])):
        print(f"{name}: {at5}/{n} objects at IoU ≥ 0.5, {at7}/{n} at IoU ≥ 0.7")
    return 0


if __name__ == "__main__":
    sys.exit(main())
