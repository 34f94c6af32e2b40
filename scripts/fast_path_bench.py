#!/usr/bin/env python3
"""The CPU fast path, step by step, in one run: each step a row, with a naive loop beside it.

    python scripts/fast_path_bench.py [--video assets/sample.mp4] [--frames 80] [--proposals 1000]
        [--parts steps,threads,adapt,demo] [--compare-checkout DIR] [--out DIR]

Parts (each measured in this one process/run, so that the ratios compare like with like on a shared,
noisy machine):

* **steps** at ``--proposals`` (default 1000, the naive loop's own count): fp32 as today → +
  channels_last → bf16 (+ channels_last) → int8 → int8 + the thread budget → what ``auto`` picks
  (the probe). Per row: the detector alone (frames in memory), the pipeline end to end, the naive
  single-thread fp32 loop run right beside it (alternating which goes first), their ratio, the
  "detector alone + decode" bound the pipeline must not fall below, and AP50 on the held-out labels.
* **threads**: the pipeline with torch 1 / all cores × decoder and encoder threads auto / 1.
* **adapt**: the adaptive controller on a file: the default settings' pipeline fps F, then
  ``--target-fps`` = 1.8 × F over 100 frames: fps of each 10 frames from frame 10 to 90, their
  mean, the moves, back-and-forth moves.
* **demo**: ``run.py --video assets/sample.mp4 --record … --headless`` (= ``make demo``) in this
  checkout and in ``--compare-checkout`` (e.g. a copy of main), alternating, ``--rounds`` each.

Writes ``fast_path.json`` (rows, machine, load) to ``--out`` and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.cli.run (docs/pipeline.md); before torch loads

import av  # noqa: E402
import torch  # noqa: E402

from app.bench import measure, report  # noqa: E402
from app.bench.sweep import BUNDLED_LABELS, build_baseline_model  # noqa: E402
from app.config import PipelineConfig  # noqa: E402
from app.pipeline.adapt import fps_series, oscillations  # noqa: E402
from app.pipeline.fastpath import build_detector, sample_frames  # noqa: E402
from app.pipeline.pipeline import Pipeline  # noqa: E402
from app.pipeline.threads import plan  # noqa: E402
from detector import Detector, DetectorConfig  # noqa: E402


def decode_ms(video: Path, n: int, threads: int) -> float:
    """ms per frame to decode (and convert to RGB) the first ``n`` frames, as the file source does."""
    start = time.perf_counter()
    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.thread_count = threads
        for i, frame in enumerate(c.decode(stream)):
            if i >= n:
                break
            frame.to_ndarray(format="rgb24")
    return (time.perf_counter() - start) * 1e3 / n


def labels_for(frames):
    from app.bench.accuracy import load_labels

    for path, offset in BUNDLED_LABELS:
        if path.is_file():
            size = (frames[0].image.shape[1], frames[0].image.shape[0])
            return load_labels(path, [f.index for f in frames], size, offset)
    return None


def steps_part(args, frames, labels, scratch: Path) -> list[dict]:
    budget = plan()
    detector = Detector(DetectorConfig(device="cpu", precision="fp32", memory_format="contiguous",
                                       proposals=args.proposals), calibration=sample_frames)
    base_model, names, _ = build_baseline_model(DetectorConfig(device="cpu", proposals=args.proposals))
    base_props = base_model.rpn._post_nms_top_n["testing"]
    n = len(frames)
    steps = [
        ("fp32, contiguous (today)", "fp32", False, (0, 0)),
        ("fp32 + channels_last", "fp32", True, (0, 0)),
        ("bf16 + channels_last", "bf16", True, (0, 0)),
        ("int8", "int8", False, (0, 0)),
        ("int8 + thread budget", "int8", False, (budget.decode, budget.encode)),
    ]
    auto, setup = build_detector(DetectorConfig(device="cpu", proposals=args.proposals), reprobe=args.reprobe, wait=True)
    probe = setup.probe.result if setup.probe else None
    choice = probe.choice if probe else None
    rows = []
    for i, (name, precision, cl, (dec, enc)) in enumerate([*steps, ("auto (probe) + thread budget", None, None,
                                                                     (budget.decode, budget.encode))]):
        det = auto if precision is None else detector
        if precision is not None:
            det.set_precision(precision)
            det.set_memory_format("channels_last" if cl else "contiguous")
        det.set_proposal_count(args.proposals)
        run = measure.on_worker_thread(lambda det=det: measure.measure_detector(det, frames, 3))
        naive = lambda: measure.on_worker_thread(  # noqa: E731
            lambda: measure.naive_loop(base_model, args.video, n, scratch / "naive.mp4", torch.device("cpu"), names, warmup=1))
        first = naive() if i % 2 == 0 else None
        pipe = measure.pipeline_loop(det, args.video, n, scratch / "pipe.mp4", decode_threads=dec, encode_threads=enc)
        base = first or naive()
        dec_ms = decode_ms(args.video, n, dec)
        bound = 1000.0 / (1000.0 / run.fps + dec_ms)
        ap50 = labels.evaluate(run.detections)["AP50"] if labels is not None else None
        rows.append({"step": name if precision is not None else f"auto → {det.precision}"
                     + ("+channels_last" if det.channels_last else "") + " + thread budget",
                     "precision": det.precision, "channels_last": det.channels_last, "decode_threads": dec,
                     "encode_threads": enc, "torch_threads": torch.get_num_threads(), "proposals": args.proposals,
                     "detector_fps": run.fps, "backbone_ms": run.stage_stats()["backbone"][0],
                     "roi_heads_ms": run.stage_stats()["roi_heads"][0], "pipeline_fps": pipe.fps,
                     "naive_fps": base.fps, "naive_proposals": base_props, "pipeline_vs_naive": pipe.fps / base.fps,
                     "decode_ms": dec_ms, "detector_plus_decode_fps": bound, "pipeline_vs_bound": pipe.fps / bound,
                     "ap50": ap50})
        print(_row_line(rows[-1]), flush=True)
    rows.append({"probe": {"choice": choice.name if choice else None, "ms": probe.ms if probe else None,
                           "reason": setup.summary_lines()}})
    return rows


def _row_line(r: dict) -> str:
    ap = f"{r['ap50']:.3f}" if r.get("ap50") is not None else "–"
    return (f"| {r['step']} | {r['detector_fps']:.2f} | {r['backbone_ms']:.0f} | {r['roi_heads_ms']:.0f} | "
            f"{r['pipeline_fps']:.2f} | {r['naive_fps']:.2f} | **{r['pipeline_vs_naive']:.2f}×** | "
            f"{r['detector_plus_decode_fps']:.2f} | {r['pipeline_vs_bound']:.2f} | {ap} |")


def threads_part(args, frames, scratch: Path) -> list[dict]:
    detector, _ = build_detector(DetectorConfig(device="cpu", proposals=300), wait=True)
    n = len(frames)
    cores = os.cpu_count() or 1
    rows = []
    combos = [(cores, 0, 0), (cores, 1, 1), (cores, 1, 0), (max(1, cores - 1), 1, 1), (1, 1, 1)]
    for rnd in range(args.rounds):
        for t, dec, enc in combos if rnd % 2 == 0 else reversed(combos):
            torch.set_num_threads(t)
            pipe = measure.pipeline_loop(detector, args.video, n, scratch / "pipe.mp4", decode_threads=dec, encode_threads=enc)
            rows.append({"torch_threads": t, "decode_threads": dec, "encode_threads": enc, "round": rnd,
                         "precision": detector.precision, "pipeline_fps": pipe.fps})
            print(f"| torch {t} | decode {dec or 'auto'} | x264 {enc or 'auto'} | {pipe.fps:.2f} |", flush=True)
    torch.set_num_threads(cores)
    return rows


def adapt_part(args, scratch: Path) -> dict:
    detector, setup = build_detector(DetectorConfig(device="cpu"), wait=True)
    budget = {"decode_threads": setup.budget.decode, "encode_threads": setup.budget.encode}
    n = 100  # frames 10–90 are judged: 8 blocks of 10 (and 10 more so that the last block is whole)
    config = PipelineConfig(source_kind="video", source=str(args.video), record=str(scratch / "a.mp4"), overwrite=True,
                            max_frames=n, policy="every_frame", headless=True, **budget)
    default = Pipeline(config, detector).run()
    base_fps = default.mean_fps
    target = round(args.target_factor * base_fps, 2)
    stats = Pipeline(config.with_(target_fps=target), detector).run()
    times = list(stats.done_times)
    blocks = fps_series(times[10:91], 10)  # 81 stamps: frames 10–90 in 8 blocks
    mean = 80 / (times[90] - times[10]) if len(times) > 90 else None
    a = stats.adapt
    out = {"precision": detector.precision, "default_setting": f"{detector.base_input_size} px, 300 proposals",
           "default_pipeline_fps": base_fps, "target_fps": target, "frames": len(times),
           "fps_per_10_frames_10_to_90": blocks, "mean_fps_frames_10_to_90": mean,
           "min_block_vs_target": min(blocks) / target if blocks else None,
           "mean_vs_target": mean / target if mean else None,
           "moves": [(f, s.describe(), r) for f, _t, s, r in a.history], "oscillations": oscillations(a.history),
           "final": a.setting.describe(), "final_reason": a.reason}
    print(json.dumps(out, indent=1), flush=True)
    return out


def demo_part(args) -> dict:
    """``make demo``'s command in this checkout and in ``--compare-checkout``, alternating."""
    checkouts = {"this": ROOT}
    if args.compare_checkout:
        checkouts = {"compare": Path(args.compare_checkout), **checkouts}
    out: dict[str, list[float]] = {k: [] for k in checkouts}
    with tempfile.TemporaryDirectory(prefix="demo-") as tmp:
        for rnd in range(args.rounds):
            order = list(checkouts.items()) if rnd % 2 == 0 else list(reversed(checkouts.items()))
            for name, path in order:
                cmd = [sys.executable, "run.py", "--video", "assets/sample.mp4", "--record", f"{tmp}/{name}.mp4",
                       "--headless", "--overwrite"]
                env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYTHONPATH")}
                done = subprocess.run(cmd, cwd=path, capture_output=True, text=True, env=env, timeout=900)
                match = re.search(r"speed: ([\d.]+) fps", done.stderr)
                fps = float(match.group(1)) if match else float("nan")
                out[name].append(fps)
                notes = [line for line in done.stderr.splitlines() if line.startswith("note:")]
                print(f"demo {name} round {rnd}: {fps:.2f} fps {notes}", flush=True)
    result = {k: {"fps_runs": v, "fps_mean": sum(v) / len(v)} for k, v in out.items()}
    if "compare" in result:
        result["ratio"] = result["this"]["fps_mean"] / result["compare"]["fps_mean"]
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", type=Path, default=ROOT / "assets" / "sample.mp4")
    p.add_argument("--frames", type=int, default=80)
    p.add_argument("--proposals", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--parts", default="steps,threads,adapt,demo")
    p.add_argument("--target-factor", type=float, default=1.8)
    p.add_argument("--compare-checkout", default=None, help="another checkout (e.g. of main) for the demo comparison")
    p.add_argument("--reprobe", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    parts = set(args.parts.split(","))
    machine = report.machine_info()
    document = {"machine": machine, "settings": {k: str(v) for k, v in vars(args).items()}}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fastpath-") as tmp:
        scratch = Path(tmp)
        frames = measure.read_frames(args.video, args.frames)
        if "steps" in parts:
            print("| step | detector fps | backbone ms | RoI head ms | pipeline fps | naive fps (beside) | pipeline ÷ naive "
                  "| detector+decode bound fps | pipeline ÷ bound | AP50 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            document["steps"] = steps_part(args, frames, labels_for(frames), scratch)
        if "threads" in parts:
            print("| torch | decoder | x264 | pipeline fps |\n|---|---|---|---:|")
            document["threads"] = threads_part(args, frames, scratch)
        if "adapt" in parts:
            document["adapt"] = adapt_part(args, scratch)
        if "demo" in parts:
            document["demo"] = demo_part(args)
    machine["load_average_at_end"] = report._loadavg()
    machine["wall_s"] = round(time.monotonic() - started, 1)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        report.write_json(args.out / "fast_path.json", document)
        print(f"wrote {args.out / 'fast_path.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
