"""Per-stage timings of the staged detector on one 640×480 frame of the sample clip (CPU).

    python scripts/stage_timings.py [--models paper,fasterrcnn_mobilenet_v3_large_320_fpn] [--repeat 5]
        [--precision fp32,int8] [--channels-last off,on]

"default" runs the bundled model; the others run with random weights. Every precision × layout is
timed on the same frame (int8 is calibrated on frames of the sample clip). Beware: an untrained RPN
scores near-identical boxes, so NMS may leave far fewer proposals than asked for — the "kept" column
shows how many the RoI head really saw.
"""

from __future__ import annotations

import argparse
import os
import statistics

import av
import cv2
import torch

from app.pipeline.fastpath import sample_frames
from detector import STAGES, Detector, DetectorConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="default,paper,fasterrcnn_mobilenet_v3_large_320_fpn")
    parser.add_argument("--proposals", default="100,1000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16, int8")
    parser.add_argument("--channels-last", default="off", help="comma-separated: off, on")
    args = parser.parse_args()
    with av.open("assets/sample.mp4") as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    frame = cv2.resize(frame, (640, 480), interpolation=cv2.INTER_AREA)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; frame 640×480")
    print(f"{'model':40s} {'setup':>18s} {'N':>5s} {'kept':>5s} " + " ".join(f"{s:>11s}" for s in STAGES) + f" {'total':>8s} {'fps':>6s}")
    for name in args.models.split(","):
        size = dict(min_size=480, max_size=640) if name == "paper" else {}
        weights = "default" if name == "default" else "random"
        det = Detector(DetectorConfig(model=name, weights=weights, device="cpu", **size), calibration=sample_frames)
        setups = [(p, cl) for p in args.precision.split(",") for cl in args.channels_last.split(",")]
        for (precision, cl), n in ((s, n) for s in setups for n in map(int, args.proposals.split(","))):
            det.set_precision(precision)
            det.set_memory_format("channels_last" if cl == "on" else "contiguous")
            det.set_proposal_count(n)
            setup = precision + ("+channels_last" if cl == "on" else "")
            det.detect([frame])  # warm-up
            runs, kept = [], []
            for _ in range(args.repeat):
                det.detect([frame])
                runs.append(det.last_times.as_dict())
                kept += det.last_proposal_counts
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"{name:40s} {setup:>18s} {n:5d} {statistics.median(kept):5.0f} " + " ".join(f"{med[s]:9.1f}ms" for s in STAGES)
                  + f" {med['total']:6.1f}ms {1000 / med['total']:6.1f}")


if __name__ == "__main__":
    main()
