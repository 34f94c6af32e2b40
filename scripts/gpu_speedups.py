#!/usr/bin/env python3
"""The speed-up ladder on a GPU: each optimisation measured against the previous state, in one run.

For each model (random weights unless given), on the first frames of a clip, batch 1, a fixed
proposal count, it times the whole forward (upload → transform → backbone → RPN → RoI head →
postprocess, synchronised per frame) in cumulative states:

  plain       fp32, NCHW, pageable ``tensor.to(device)`` — torchvision as it comes
  +pinned     pinned host memory and a non-blocking upload
  +fp16       autocast fp16
  +chlast     channels_last backbone weights and input
  +compile    torch.compile of the backbone (default mode, static shapes)
  +cudagraph  torch.compile(mode="reduce-overhead"): the backbone replayed as a CUDA graph

and, for reference, the product's own ``Detector`` at the same settings. Each state also reports
how far its backbone features are from the plain fp32 ones (max |Δ| / max |x|), so that a speed-up
that changes the answer shows. A state that fails (e.g. compile unavailable) is recorded with its
error and the ladder goes on from the last good state.

    python3 scripts/gpu_speedups.py --out $OUT/speedups.json          # on the GPU machine
    python3 scripts/gpu_speedups.py --device cpu --models paper --steps plain,+pinned,+fp16,+chlast \\
        --min-size 64 --max-size 96 --frames 3 --warmup 1 --out /tmp/s.json   # smoke test on the CPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from app.bench.measure import read_frames  # noqa: E402
from app.bench.stats import median_p90  # noqa: E402
from detector.config import DetectorConfig, default_pre_nms  # noqa: E402
from detector.detector import Detector  # noqa: E402
from detector.factory import create_model  # noqa: E402

STEPS = ("plain", "+pinned", "+fp16", "+chlast", "+compile", "+cudagraph")


class State:
    """The knobs of one rung of the ladder."""

    def __init__(self) -> None:
        self.pinned = self.fp16 = self.chlast = False
        self.compiled: str | None = None  # None, "default" or "reduce-overhead"


def apply(step: str, state: State, model, eager_backbone) -> None:
    if step == "+pinned":
        state.pinned = True
    elif step == "+fp16":
        state.fp16 = True
    elif step == "+chlast":
        state.chlast = True
        model.backbone.to(memory_format=torch.channels_last)
    elif step in ("+compile", "+cudagraph"):
        mode = "default" if step == "+compile" else "reduce-overhead"
        model.backbone = torch.compile(eager_backbone, mode=mode, dynamic=False)
        state.compiled = mode


@torch.inference_mode()
def forward(model, image: np.ndarray, state: State, device: torch.device):
    """One frame through the model's stages; returns (detections, backbone features)."""
    t = torch.from_numpy(image)
    t = t.pin_memory().to(device, non_blocking=True) if state.pinned and device.type == "cuda" else t.to(device)
    x = t.permute(2, 0, 1).float().div_(255.0)
    image_list, _ = model.transform([x])
    if state.chlast:
        image_list.tensors = image_list.tensors.contiguous(memory_format=torch.channels_last)
    cast = torch.autocast(device_type=device.type, dtype=torch.float16) if state.fp16 else nullcontext()
    with cast:
        features = model.backbone(image_list.tensors)
        if isinstance(features, torch.Tensor):
            features = {"0": features}
        proposals, _ = model.rpn(image_list, features)
        detections, _ = model.roi_heads(features, proposals, image_list.image_sizes)
    detections = model.transform.postprocess(detections, image_list.image_sizes, [image.shape[:2]])
    return [{k: v.float().cpu() for k, v in d.items()} for d in detections], features


def time_frames(fn, frames, warmup: int, device: torch.device) -> tuple[list[float], float]:
    """ms per frame (synchronised) after ``warmup`` uncounted calls; also the warm-up's seconds."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    for i in range(warmup):
        fn(frames[i % len(frames)])
    sync()
    warm_s = time.perf_counter() - start
    ms = []
    for frame in frames:
        t = time.perf_counter()
        fn(frame)
        sync()
        ms.append((time.perf_counter() - t) * 1e3)
    return ms, warm_s


def feature_error(features, reference) -> float:
    worst = 0.0
    for key, ref in reference.items():
        got = features[key].float()
        scale = float(ref.abs().max()) or 1.0
        worst = max(worst, float((got - ref).abs().max()) / scale)
    return worst


def ladder(name: str, weights: str, args, frames, device: torch.device, save) -> None:
    """Measure the cumulative states for one model; ``save(row)`` is called for every row."""
    config = DetectorConfig(model=name, weights=weights, device=str(device), precision="fp32",
                            proposals=args.proposals, score_threshold=args.score_threshold,
                            min_size=args.min_size, max_size=args.max_size)
    model, _, info = create_model(config)
    if args.min_size:
        model.transform.min_size = (args.min_size,)
    if args.max_size:
        model.transform.max_size = args.max_size
    model = model.eval().to(device)
    model.rpn._post_nms_top_n["testing"] = args.proposals
    model.rpn._pre_nms_top_n["testing"] = default_pre_nms(args.proposals)
    model.roi_heads.score_thresh = args.score_threshold
    eager_backbone = model.backbone
    state = State()
    reference = None
    previous_fps = None
    for step in args.steps:
        if step == "+fp16" and device.type != "cuda":
            save({"model": name, "step": step, "skipped": "fp16 autocast is CUDA-only here"})
            continue
        row = {"model": name, "weights": weights, "trained": info.trained, "step": step, "proposals": args.proposals}
        try:
            apply(step, state, model, eager_backbone)
            ms, warm_s = time_frames(lambda f: forward(model, f, state, device), frames, args.warmup, device)
            _, features = forward(model, frames[0], state, device)
            features = {k: v.float() for k, v in features.items()}
            if reference is None:
                reference = features
            median, p90 = median_p90(ms)
            fps = 1000.0 * len(ms) / sum(ms)
            row.update(fps=fps, ms_median=median, ms_p90=p90, warmup_s=warm_s,
                       speedup_vs_previous=(fps / previous_fps) if previous_fps else None,
                       feature_rel_error_vs_plain=feature_error(features, reference))
            previous_fps = fps
        except Exception as exc:  # record it, go on from the last good state
            row["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            traceback.print_exc()
            if step in ("+compile", "+cudagraph"):
                model.backbone = eager_backbone
                state.compiled = None
        save(row)
        print(json.dumps(row), flush=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # The product's own staged detector at the same settings (it pins, uses channels_last on CUDA
    # and autocasts), as a reference point for the ladder.
    for precision in (("fp32", "fp16") if device.type == "cuda" else ("fp32",)):
        detector = Detector(config.with_(precision=precision))
        ms, _ = time_frames(lambda f, d=detector: d.detect(f, timing=False), frames, args.warmup, device)
        median, p90 = median_p90(ms)
        row = {"model": name, "weights": weights, "step": f"Detector {precision} (the product)", "proposals": args.proposals,
               "fps": 1000.0 * len(ms) / sum(ms), "ms_median": median, "ms_p90": p90}
        save(row)
        print(json.dumps(row), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", default="assets/sample.mp4")
    p.add_argument("--models", default="fasterrcnn_resnet50_fpn,fasterrcnn_mobilenet_v3_large_fpn")
    p.add_argument("--weights", default="random", help="one for all models, or one per model")
    p.add_argument("--device", default="cuda")
    p.add_argument("--proposals", type=int, default=300)
    p.add_argument("--score-threshold", type=float, default=0.05)
    p.add_argument("--min-size", type=int, default=None, help="resize the short side to this (default: the model's own)")
    p.add_argument("--max-size", type=int, default=None)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", default=",".join(STEPS))
    p.add_argument("--out", default="speedups.json")
    args = p.parse_args(argv)
    args.steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in args.steps if s not in STEPS]
    if unknown:
        p.error(f"unknown steps {unknown}; expected {', '.join(STEPS)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    models = args.models.split(",")
    weights = args.weights.split(",")
    weights = weights * len(models) if len(weights) == 1 else weights
    frames = [f.image for f in read_frames(Path(args.video), args.frames)]
    doc = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "video": args.video, "frames": len(frames), "warmup": args.warmup,
        "what": "cumulative states; batch 1; ms per frame synchronised; speedup_vs_previous = fps / fps of the previous good state",
        "rows": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(row: dict) -> None:
        # Written after every row: a run cut short by its time limit still leaves what it measured.
        doc["rows"].append(row)
        out.write_text(json.dumps(doc, indent=2) + "\n")

    for name, w in zip(models, weights, strict=True):
        ladder(name, w, args, frames, device, save)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
