#!/usr/bin/env python3
"""Check detector/tfjs.py and the NanoDet / CenterNet teachers against TensorFlow.js itself, and write
the small fixture the tests compare with (``tests/data/tfjs_reference.npz``).

Needs node + npm and the TF.js files (``make teacher``). Installs ``@tensorflow/tfjs@4`` (the pure-JS
CPU backend; no native binary) into ``.cache/tfjs-ref`` on first use, then for each frame (vtest.avi
frame 100, bikes.mp4 frame 60, messi5.jpg from --media, and frame 0 of ``assets/sample.mp4``, the
fixture's frame) and each model:

1. preprocesses the frame as the teacher does (``NanoDetTeacher.preprocess`` / ``CenterNetTeacher.preprocess``);
2. runs the graph in TF.js (``scripts/tfjs_reference.cjs``: raw outputs, a few intermediates, and the
   detections decoded in JS with TF.js's own NMS) and in ``detector.tfjs``;
3. prints the max abs difference of every output, and how the JS detections match the teacher's.

The fixture keeps, for the sample frame only: slices of every raw output and of NanoDet's PAN maps
(the ``nanodet`` backbone's trunk outputs), CenterNet's 100 detection rows, and both decoded
detection lists in frame pixels (< 100 KB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detector.tfjs import GraphModel  # noqa: E402
from detector.tfjs_teachers import CenterNetTeacher, NanoDetTeacher  # noqa: E402

NANODET_PAN = ("PartitionedCall/onnx_tf_prefix_Add_107", "PartitionedCall/onnx_tf_prefix_Add_128",
               "PartitionedCall/onnx_tf_prefix_Add_149")  # the PAN outputs (NCHW) that feed the head
SCORE, IOU = 0.25, 0.6


def video_frame(path: Path, index: int) -> np.ndarray:
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == index:
                return f.to_ndarray(format="rgb24")
    raise SystemExit(f"{path} has no frame {index}")


def ensure_tfjs(folder: Path) -> Path:
    modules = folder / "node_modules"
    if not (modules / "@tensorflow" / "tfjs-converter").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text('{"name": "tfjs-ref", "private": true}\n')
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "@tensorflow/tfjs@4"], cwd=folder, check=True)
    return modules


def run_tfjs(modules: Path, model: Path, name: str, x: torch.Tensor, fetch: list[str], decode: str,
             work: Path) -> tuple[list[np.ndarray], list | None, float]:
    work.mkdir(parents=True, exist_ok=True)
    (work / "x.bin").write_bytes(x.contiguous().numpy().astype("<f4").tobytes())
    job = {"model": str(model), "input": {"name": name, "file": str(work / "x.bin"), "shape": list(x.shape)},
           "fetch": fetch, "decode": decode, "score_threshold": SCORE, "iou_threshold": IOU, "out": str(work)}
    (work / "job.json").write_text(json.dumps(job))
    subprocess.run(["node", str(ROOT / "scripts" / "tfjs_reference.cjs"), str(work / "job.json")], check=True,
                   env={**os.environ, "NODE_PATH": str(modules)})
    meta = json.loads((work / "outputs.json").read_text())
    outs = [np.fromfile(work / f"{i}.bin", dtype="<f4").reshape(o["shape"]) for i, o in enumerate(meta["outputs"])]
    return outs, json.loads((work / "detections.json").read_text()), meta["seconds"]


def to_frame(dets: list, scale: float, dx: int, dy: int, shape) -> np.ndarray:
    """JS detections [x1, y1, x2, y2, score, class] in input pixels → frame pixels (as the teachers map)."""
    if not dets:
        return np.zeros((0, 6), np.float32)
    d = np.asarray(dets, np.float32)
    h, w = shape[:2]
    d[:, [0, 2]] = np.clip((d[:, [0, 2]] - dx) / scale, 0, w)
    d[:, [1, 3]] = np.clip((d[:, [1, 3]] - dy) / scale, 0, h)
    return d


def match(ref: np.ndarray, det) -> str:
    """How the teacher's detections match the reference's: counts, max box / score difference."""
    ours = np.concatenate([det.boxes, det.scores[:, None], det.class_ids[:, None] - 1.0], 1) if len(det) else np.zeros((0, 6))
    if len(ours) != len(ref):
        return f"{len(ref)} reference vs {len(ours)} teacher detections"
    if not len(ref):
        return "0 detections on both"
    ref = ref[np.lexsort((ref[:, 0], -ref[:, 4]))]
    ours = ours[np.lexsort((ours[:, 0], -ours[:, 4]))]
    same_class = bool((ref[:, 5] == ours[:, 5]).all())
    return (f"{len(ref)} detections, classes equal: {same_class}, max |Δbox| {np.abs(ref[:, :4] - ours[:, :4]).max():.2e} px, "
            f"max |Δscore| {np.abs(ref[:, 4] - ours[:, 4]).max():.2e}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tfjs-dir", default=str(ROOT / ".cache" / "tfjs"))
    p.add_argument("--media", default=str(next((m for m in (ROOT.parent / "shared" / "media", Path("/work/shared/media"))
                                                if m.is_dir()), ROOT.parent / "shared" / "media")),
                   help="folder with vtest.avi, bikes.mp4 and messi5.jpg (skipped when absent)")
    p.add_argument("--out", default=str(ROOT / "tests" / "data" / "tfjs_reference.npz"))
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    tfjs, media = Path(args.tfjs_dir), Path(args.media)
    modules = ensure_tfjs(ROOT / ".cache" / "tfjs-ref")
    frames = {"sample.mp4#0": video_frame(ROOT / "assets" / "sample.mp4", 0)}
    if media.is_dir():
        frames["vtest.avi#100"] = video_frame(media / "vtest.avi", 100)
        frames["bikes.mp4#60"] = video_frame(media / "bikes.mp4", 60)
        frames["messi5.jpg"] = cv2.cvtColor(cv2.imread(str(media / "messi5.jpg")), cv2.COLOR_BGR2RGB)
    nanodet = NanoDetTeacher.from_directory(tfjs, sizes=(416,), score_threshold=SCORE, nms_threshold=IOU)
    centernet = CenterNetTeacher.from_directory(tfjs, score_threshold=SCORE, nms_threshold=IOU)
    graphs = {"nanodet": GraphModel.load(tfjs / "nanodet.json"), "centernet": GraphModel.load(tfjs / "centernet.json")}
    fixture: dict[str, np.ndarray] = {}
    info: dict = {"score_threshold": SCORE, "iou_threshold": IOU, "frame": "assets/sample.mp4 frame 0", "diffs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for key, frame in frames.items():
            for model in ("nanodet", "centernet"):
                graph = graphs[model]
                if model == "nanodet":
                    x, scale, dx, dy = nanodet.preprocess(frame, 416)
                    x = x.flip(1)  # the graph's stem reads BGR (the torch modules swap it once instead)
                    fetch, decode, det = [*graph.outputs, *NANODET_PAN], "nanodet", nanodet.detect_one(frame)
                else:
                    x, scale, dx, dy = centernet.preprocess(frame)
                    fetch, decode, det = list(graph.outputs), "centernet", centernet.detect_one(frame)
                ref, ref_dets, seconds = run_tfjs(modules, tfjs / f"{model}.json", graph.inputs[0].split(":")[0], x,
                                                  fetch, decode, Path(tmp) / f"{model}-{len(info['diffs'])}")
                ours = graph.run({graph.inputs[0]: x}, fetch)
                diffs = {name: float(np.abs(ours[name].float().numpy() - r).max()) for name, r in zip(fetch, ref, strict=True)}
                ref_frame = to_frame(ref_dets, scale, dx, dy, frame.shape)
                info["diffs"][f"{model} {key}"] = {"max_abs_diff": diffs, "tfjs_seconds": seconds,
                                                   "detections": match(ref_frame, det)}
                print(f"{model:9s} {key:14s} TF.js {seconds:5.1f} s; " + match(ref_frame, det))
                for name, d in diffs.items():
                    print(f"    {name:45s} max |Δ| {d:.2e}   (|ref| ≤ {np.abs(ref[fetch.index(name)]).max():.3g})")
                if key != "sample.mp4#0":
                    continue
                fixture[f"{model}/detections"] = ref_frame
                if model == "nanodet":
                    for name, r in zip(fetch, ref, strict=True):
                        if name in NANODET_PAN:  # a corner of each PAN map [16 ch, 8, 8]
                            fixture[f"nanodet/{name}"] = r[0, :16, :8, :8]
                        elif r.shape[-1] == 80:  # the 20 cells with the best class score, and their bins
                            cells = np.argsort(-r[0].max(1))[:20]
                            reg = next(n for n, o in zip(fetch, ref, strict=True) if o.shape[1] == r.shape[1] and o.shape[-1] == 44)
                            fixture[f"nanodet/{name}/cells"] = cells
                            fixture[f"nanodet/{name}"] = r[0, cells]
                            fixture[f"nanodet/{reg}"] = ref[fetch.index(reg)][0, cells]
                else:
                    for name, r in zip(fetch, ref, strict=True):
                        fixture[f"centernet/{name}"] = r[0] if name == "tower_0/detections" else r[0, 40:48, 40:48]
    fixture["info"] = np.array(json.dumps(info))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **fixture)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
