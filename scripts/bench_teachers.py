#!/usr/bin/env python3
"""Speed of the frozen trunks and of the teachers on CPU, and a quick person count per teacher.

In one process, 2 torch threads, fp32, runs interleaved (A, B, A, B, …) so that load from other jobs
hits every candidate alike; medians reported:

1. trunk ms on one 640×480 frame: ``nanodet`` vs ``yolov3_tiny`` (``backbone.trunk_features``),
   contiguous and channels_last, and their ratio;
2. teacher ms per 768×576 vtest frame: YOLOv3-tiny 416+608 and 416, NanoDet 416 and 416+608 (torch
   modules), NanoDet's network alone as modules and as the graph run by ``detector.tfjs``, CenterNet
   512, YOLO + NanoDet fused;
3. persons found (score ≥ 0.4 and ≥ 0.25) on vtest.avi and bikes.mp4 frames by each teacher — a
   sanity check, not an evaluation (no ground truth here).

Needs ``make teacher`` (Darknet + TF.js files) and the media folder (vtest.avi, bikes.mp4).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def frames(path: Path, every: int, count: int) -> list[np.ndarray]:
    out = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % every == 0:
                out.append(f.to_ndarray(format="rgb24"))
            if len(out) == count:
                break
    return out


def interleaved(fns: dict[str, callable], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """ms of each callable, run in turn ``repeats`` times after ``warmup`` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t) * 1e3)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--media", default=str(next((m for m in (ROOT.parent / "shared" / "media", Path("/work/shared/media"))
                                                if m.is_dir()), ROOT.parent / "shared" / "media")))
    p.add_argument("--cache", default=str(ROOT / ".cache"))
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--count-frames", type=int, default=12, help="frames per clip for the person count")
    p.add_argument("--out", default=None, help="also write the figures to this JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    media, cache = Path(args.media), Path(args.cache)
    from app.jobs.teachers import build_teacher
    from detector.backbones import build_backbone
    from detector.tfjs import GraphModel
    from detector.tfjs_teachers import CenterNetTeacher, NanoDetTeacher

    results: dict = {"threads": torch.get_num_threads(), "torch": torch.__version__}

    # 1. trunks on one 640×480 frame
    rgb = cv2.resize(frames(media / "vtest.avi", 1, 101)[100], (640, 480), interpolation=cv2.INTER_AREA)
    image = torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255
    bodies = {"nanodet": build_backbone("nanodet", 128, tfjs_model=str(cache / "tfjs" / "nanodet.json")),
              "yolov3_tiny": build_backbone("yolov3_tiny", 128, darknet_weights=str(cache / "darknet" / "yolov3-tiny.weights"))}
    fns = {}
    for name, body in bodies.items():
        body.eval()
        mean, std = torch.tensor(body.image_mean).view(1, 3, 1, 1), torch.tensor(body.image_std).view(1, 3, 1, 1)
        x = (image - mean) / std
        fns[name] = (lambda b=body, x=x: b.trunk_features(x))
        last = copy.deepcopy(body).to(memory_format=torch.channels_last)  # same weights, NHWC memory
        fns[f"{name} channels_last"] = (lambda b=last, x=x.contiguous(memory_format=torch.channels_last):
                                        b.trunk_features(x))
    trunk = {k: round(statistics.median(v), 1) for k, v in interleaved(fns, args.repeats).items()}
    trunk["ratio nanodet / yolov3_tiny"] = round(trunk["nanodet"] / trunk["yolov3_tiny"], 3)
    trunk["ratio channels_last"] = round(trunk["nanodet channels_last"] / trunk["yolov3_tiny channels_last"], 3)
    results["trunk_ms_640x480"] = trunk
    print("trunk ms (640×480, median of", args.repeats, "):", json.dumps(trunk))

    # 2. teachers per frame, 3. persons found
    clips = {"vtest": frames(media / "vtest.avi", 60, args.count_frames),
             "bikes": frames(media / "bikes.mp4", 20, args.count_frames)}
    teachers = {
        "yolo 416+608": build_teacher(("yolo",), 0.25, darknet_dir=cache / "darknet"),
        "yolo 416": build_teacher(("yolo",), 0.25, yolo_sizes=(416,), darknet_dir=cache / "darknet"),
        "nanodet 416": NanoDetTeacher.from_directory(cache / "tfjs", score_threshold=0.25),
        "nanodet 416+608": NanoDetTeacher.from_directory(cache / "tfjs", sizes=(416, 608), score_threshold=0.25),
        "centernet 512": CenterNetTeacher.from_directory(cache / "tfjs", score_threshold=0.25),
        "yolo+nanodet WBF": build_teacher(("yolo", "nanodet"), 0.25, darknet_dir=cache / "darknet",
                                          tfjs_dir=cache / "tfjs"),
    }
    graph = GraphModel.load(cache / "tfjs" / "nanodet.json")
    nano = teachers["nanodet 416"]
    frame = clips["vtest"][0]
    x = nano.preprocess(frame, 416)[0].flip(1)
    fns = {name: (lambda t=t: t.detect_one(frame)) for name, t in teachers.items()}
    fns["nanodet graph (detector.tfjs), network only"] = lambda: graph.run({"input_1": x})
    fns["nanodet modules, network only"] = lambda: nano.net(x.flip(1))
    with torch.no_grad():
        times = interleaved(fns, max(3, args.repeats // 2))
    results["teacher_ms_768x576"] = {k: round(statistics.median(v), 1) for k, v in times.items()}
    print("teacher ms per 768×576 frame:", json.dumps(results["teacher_ms_768x576"]))

    counts: dict = {}
    for clip, images in clips.items():
        for name, t in teachers.items():
            dets = [t.detect_one(f) for f in images]
            counts.setdefault(clip, {})[name] = {
                f"persons >= {s}": sum(int(((np.array(d.labels) == "person") & (d.scores >= s)).sum()) for d in dets)
                for s in (0.4, 0.25)}
    results["persons_found"] = {"frames": {k: len(v) for k, v in clips.items()}, **counts}
    print("persons found:", json.dumps(results["persons_found"], indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
