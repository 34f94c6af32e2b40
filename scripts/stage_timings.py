"""Per-stage timings of the staged detector on one 640×480 frame of the sample clip (CPU).

    python scripts/stage_timings.py [--models paper,fasterrcnn_mobilenet_v3_large_320_fpn] [--repeat 5]

Random weights: speed depends on the weights only through the number of detections, and the
RPN/RoI stages always see exactly the proposal count set here.
"""

from __future__ import annotations

import argparse
import os
import statistics

import av
import cv2
import torch

from detector import STAGES, Detector, DetectorConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="paper,fasterrcnn_mobilenet_v3_large_320_fpn")
    parser.add_argument("--proposals", default="100,1000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with av.open("assets/sample.mp4") as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    frame = cv2.resize(frame, (640, 480), interpolation=cv2.INTER_AREA)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; frame 640×480")
    print(f"{'model':40s} {'N':>5s} " + " ".join(f"{s:>11s}" for s in STAGES) + f" {'total':>8s} {'fps':>6s}")
    for name in args.models.split(","):
        size = dict(min_size=480, max_size=640) if name == "paper" else {}
        det = Detector(DetectorConfig(model=name, weights="random", device="cpu", **size))
        for n in map(int, args.proposals.split(",")):
            det.set_proposal_count(n)
            det.detect([frame])  # warm-up
            runs = []
            for _ in range(args.repeat):
                det.detect([frame])
                runs.append(det.last_times.as_dict())
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"{name:40s} {n:5d} " + " ".join(f"{med[s]:9.1f}ms" for s in STAGES)
                  + f" {med['total']:6.1f}ms {1000 / med['total']:6.1f}")


if __name__ == "__main__":
    main()
