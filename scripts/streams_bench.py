#!/usr/bin/env python3
"""Many streams through one detector (``Pipeline.of_streams``): 1, 2 and 4 streams, files and live.

* **files**: N streams, each the first F frames of the clip, every frame, as fast as the detector
  allows → total detected fps, per-stream fps, batch sizes used. With ``--compare-batch1`` the
  same run again with the batch capped at 1 (one stream per ``detect`` call, in turns): what the
  batching itself is worth on this device.
* **live**: N local HTTP/MPEG-TS live streams (app/bench/live_streams.py, a server process each,
  the clip's frames at 10 fps), T seconds after the first result → per-stream fps, capture →
  result latency, frames dropped as stale, batch sizes used. Pacing is off (the servers send in
  real time already), so the latency is what a camera would see.
* **ab**: the detector alone on the same 8 frames, N at a time batched vs one at a time, alternating
  which goes first, ``--ab-rounds`` rounds: median ms per frame and their ratio — whether batching
  pays on this device, with the load's drift shared fairly by both.

    python scripts/streams_bench.py [--streams 1,2,4] [--modes files,live] [--frames 30] [--seconds 20] \
        [--proposals 100] [--json docs/benchmarks/streams-cpu.json]

Model: the bundled default model (``--model``/``--weights`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.cli.run does (docs/pipeline.md); before torch loads

import av  # noqa: E402
import torch  # noqa: E402

from app.bench.live_streams import LiveServer  # noqa: E402
from app.config import PipelineConfig  # noqa: E402
from app.io.sources import FileSource, UrlSource  # noqa: E402
from app.pipeline.pipeline import Pipeline, Stream  # noqa: E402
from detector import Detector, DetectorConfig  # noqa: E402


def run_files(detector, video: Path, n: int, frames: int, batch: int) -> dict:
    streams = []
    for i in range(n):
        config = PipelineConfig(source_kind="video", source=str(video), max_frames=frames)
        streams.append(Stream(f"s{i + 1}", config, FileSource(str(video))))
    pipeline = Pipeline.of_streams(streams, detector, batch_size=batch)
    t = time.perf_counter()
    pipeline.run()
    stats = pipeline.run_stats()
    wall = time.perf_counter() - t
    return row("files", n, batch, wall, stats)


def run_live(detector, video: Path, n: int, seconds: float, batch: int) -> dict:
    servers = [LiveServer("http", frames=int(seconds * 10) + 200, fps=10, video=video).start() for _ in range(n)]
    try:
        streams = []
        for i, server in enumerate(servers):
            config = PipelineConfig(source_kind="url", source=server.url, realtime=False)
            streams.append(Stream(f"live{i + 1}", config, UrlSource(server.url, timeout_s=20)))
        pipeline = Pipeline.of_streams(streams, detector, batch_size=batch)
        pipeline.start()
        try:
            deadline = time.monotonic() + 60
            while min(s.frames_written for s in pipeline.run_stats().streams.values()) == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("a live stream delivered nothing within 60 s")
                time.sleep(0.05)
            time.sleep(2.0)  # past the burst of frames FFmpeg read while probing each stream
            start = pipeline.run_stats()
            first = {name: (s.frames_written, s.frames_dropped, (s.mean_latency_ms or 0) / 1e3 * s.frames_written)
                     for name, s in start.streams.items()}
            sizes0 = dict(start.batch_sizes)
            t = time.perf_counter()
            time.sleep(seconds)
            stats = pipeline.run_stats()
            wall = time.perf_counter() - t
        finally:
            pipeline.stop()
    finally:
        for server in servers:
            server.kill()
    out = row("live", n, batch, wall, stats, baseline=first, sizes0=sizes0)
    return out


def run_ab(detector, frames, n: int, rounds: int) -> dict:
    import statistics

    times: dict[str, list[float]] = {"batched": [], "single": []}
    for r in range(rounds):
        for mode in ("batched", "single") if r % 2 == 0 else ("single", "batched"):
            for start in range(0, 8 - n + 1, n):
                group = frames[start:start + n]
                t = time.perf_counter()
                if mode == "batched":
                    detector.detect(group)
                else:
                    for f in group:
                        detector.detect([f])
                times[mode].append((time.perf_counter() - t) / n * 1e3)
    b, s = statistics.median(times["batched"]), statistics.median(times["single"])
    return {"mode": "ab", "streams": n, "rounds": rounds, "batched_ms_per_frame": b, "single_ms_per_frame": s,
            "ratio": b / s, "samples": times}


def row(mode: str, n: int, batch: int, wall: float, stats, baseline=None, sizes0=None) -> dict:
    per_stream = {}
    total = 0
    for name, s in stats.streams.items():
        written0, dropped0, latency0 = baseline[name] if baseline else (0, 0, 0.0)
        written = s.frames_written - written0
        total += written
        latency_sum = (s.mean_latency_ms or 0) / 1e3 * s.frames_written - latency0
        per_stream[name] = {
            "frames": written,
            "fps": written / wall,
            "latency_ms": latency_sum / written * 1e3 if written else None,
            "dropped": s.frames_dropped - dropped0,
            "detector_ms_per_frame": s.mean_stage_ms.get("total"),
        }
    sizes = {k: v - (sizes0 or {}).get(k, 0) for k, v in stats.batch_sizes.items()}
    sizes = {k: v for k, v in sizes.items() if v}
    calls = sum(sizes.values())
    return {
        "mode": mode, "streams": n, "batch_cap": batch or n, "wall_s": wall, "frames": total,
        "total_fps": total / wall, "per_stream": per_stream,
        "mean_batch": sum(k * v for k, v in sizes.items()) / calls if calls else None, "batch_sizes": sizes,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", default=str(ROOT / "assets" / "sample.mp4"))
    p.add_argument("--streams", default="1,2,4")
    p.add_argument("--modes", default="files,live")
    p.add_argument("--frames", type=int, default=30, help="frames per stream (files)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run (live)")
    p.add_argument("--model", default="default")
    p.add_argument("--weights", default="default")
    p.add_argument("--proposals", type=int, default=100)
    p.add_argument("--device", default="auto")
    p.add_argument("--compare-batch1", action="store_true", help="files: also run with the batch capped at 1")
    p.add_argument("--ab-rounds", type=int, default=4, help="rounds of the batched-vs-single A/B (mode ab)")
    p.add_argument("--json", default=None, help="write the rows and the machine's state here")
    args = p.parse_args()
    counts = [int(v) for v in args.streams.split(",")]
    modes = args.modes.split(",")

    detector = Detector(DetectorConfig(model=args.model, weights=args.weights, device=args.device, proposals=args.proposals))
    with av.open(args.video) as c:
        warm = [f.to_ndarray(format="rgb24") for _, f in zip(range(max(8, *counts)), c.decode(video=0), strict=False)]
    for k in sorted(set(counts)):  # warm-up: every batch size the runs will use
        for _ in range(2):
            detector.detect(warm[:k])
    load0 = os.getloadavg()
    rows = []
    for mode in modes:
        for n in counts:
            if mode == "ab":
                if n > 1:
                    r = run_ab(detector, warm, n, args.ab_rounds)
                    r["load_after"] = os.getloadavg()[0]
                    rows.append(r)
                    print(f"ab    {n} at a time: batched {r['batched_ms_per_frame']:.0f} ms/frame, one at a time "
                          f"{r['single_ms_per_frame']:.0f} ms/frame, ratio {r['ratio']:.2f}; load {r['load_after']:.1f}",
                          flush=True)
                continue
            batches = [0, 1] if (mode == "files" and args.compare_batch1 and n > 1) else [0]
            for batch in batches:
                r = run_files(detector, Path(args.video), n, args.frames, batch) if mode == "files" else \
                    run_live(detector, Path(args.video), n, args.seconds, batch)
                r["load_after"] = os.getloadavg()[0]
                rows.append(r)
                per = r["per_stream"].values()
                fps = ", ".join(f"{v['fps']:.2f}" for v in per)
                lat = ", ".join(f"{v['latency_ms']:.0f}" for v in per if v["latency_ms"] is not None) or "--"
                dropped = sum(v["dropped"] for v in per)
                print(f"{mode:5s} {n} stream(s) batch≤{r['batch_cap']}: {r['total_fps']:.2f} fps in all, per stream "
                      f"{fps}; latency {lat} ms; mean batch {r['mean_batch'] or 0:.2f} {r['batch_sizes']}; "
                      f"dropped {dropped}; load {r['load_after']:.1f}", flush=True)
    result = {
        "when_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
                    "device": str(detector.device), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "load_before": load0},
        "model": {"name": args.model, "weights": args.weights, "proposals": args.proposals,
                  "precision": detector.precision},
        "video": args.video, "rows": rows,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
