#!/usr/bin/env python3
"""Training iterations per second of the ``paper`` model on real labelled frames, per augmentation setting.

    python scripts/train_speed.py --data .cache/data/train.json --darknet .cache/darknet/yolov3-tiny.weights

For each setting it runs ``--iters`` iterations of the default model's recipe (batch 2, scales 448/544,
2000/1000 RPN boxes) and prints wall-clock iterations/s, the process's CPU seconds per iteration (all
threads; on a machine shared with other jobs this says more than the wall clock) and the seconds per
iteration spent reading, augmenting and resizing images. The machine's load average is printed with it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = {
    "cached (no augmentation)": dict(augment=()),
    "flip only, uncached": dict(augment=("flip",)),
    "mosaic,scale,color,flip": dict(augment=("mosaic", "scale", "color", "flip")),
    "mosaic,scale,color,flip + bf16 trunk": dict(augment=("mosaic", "scale", "color", "flip"), trunk_precision="bf16"),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a COCO JSON of training frames")
    p.add_argument("--darknet", default=str(ROOT / ".cache" / "darknet" / "yolov3-tiny.weights"))
    p.add_argument("--backbone", default="yolov3_tiny")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--threads", default="1,2", help="torch thread counts to try")
    args = p.parse_args(argv)

    import torch

    from detector.builders import build_paper
    from detector.train import TrainConfig, Trainer
    from detector.train_data import CocoDetectionData

    data = CocoDetectionData(args.data)
    results = []
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for name, extra in SETTINGS.items():
            torch.manual_seed(0)
            kwargs = {"darknet_weights": args.darknet} if args.backbone == "yolov3_tiny" else {}
            model = build_paper(len(data.class_names), backbone=args.backbone, anchor_sizes=None, reduce_channels=128,
                                representation_size=512, min_size=480, max_size=800, backbone_kwargs=kwargs)
            cfg = TrainConfig(epochs=1, iters_per_epoch=args.iters, batch_size=2, lr=0.01, warmup_iters=5,
                              scales=(448, 544), rpn_pre_nms_train=2000, rpn_post_nms_train=1000, log_every=10**6,
                              **extra)
            trainer = Trainer(model, data, cfg)
            load = os.getloadavg()[0]
            cpu, wall = time.process_time(), time.perf_counter()
            record = trainer.run()[0]
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            row = {"threads": threads, "setting": name, "iters_per_s": round(args.iters / wall, 3),
                   "cpu_s_per_iter": round(cpu / args.iters, 3), "data_s_per_iter": record["data_s_per_iter"],
                   "load_avg_1min": round(load, 1), "final_loss": record["loss"]}
            print(json.dumps(row), flush=True)
            results.append(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
