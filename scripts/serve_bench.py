"""Measure ``serve`` on this machine: frame transport (raw shared memory vs JPEG), then streams per
machine — 1, 2, 4 file streams (throughput) and 1, 2, 4 live streams (a file played as a 10 fps
camera: delivered fps, drops, latency) through one local Ray cluster — beside the in-process
pipeline on the same frames.

    python scripts/serve_bench.py --out docs/benchmarks/serve-cpu-DATE [--streams 1,2,4] [--frames 40]

Writes results.json (every figure, the machine, load averages before and after each step) and
prints the tables of docs/benchmarks.md. Needs Ray Serve (pip install -e '.[serve]').
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from app.serve.batching import FramePayload  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "sample.mp4"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def sample_frames(n: int) -> list[np.ndarray]:
    from app.io.sources import FileSource

    with FileSource(str(SAMPLE)) as source:
        out = []
        for frame in source.frames():
            out.append(frame.image)
            if len(out) == n:
                return out
    return out


def bench_transport(frames: list[np.ndarray], rounds: int) -> dict:
    """Per-frame cost of each transport: encode/decode alone, and a round trip through Serve to a
    replica that only decodes (sequential: latency; 8 in flight: throughput)."""
    import ray
    from ray import serve

    out: dict = {"frame_bytes": frames[0].nbytes, "shape": list(frames[0].shape)}
    t = time.perf_counter()
    jpegs = [FramePayload.encode(f, "jpeg") for f in frames]
    out["jpeg_encode_ms"] = (time.perf_counter() - t) * 1e3 / len(frames)
    t = time.perf_counter()
    for p in jpegs:
        p.decode()
    out["jpeg_decode_ms"] = (time.perf_counter() - t) * 1e3 / len(frames)
    out["jpeg_bytes"] = int(np.mean([p.nbytes for p in jpegs]))

    @serve.deployment(num_replicas=1, max_ongoing_requests=16, ray_actor_options={"num_cpus": 1})
    class Decode:
        async def __call__(self, payload: FramePayload) -> int:
            return int(payload.decode()[0, 0, 0])

    ray.init(address="local", num_cpus=2, object_store_memory=256 * 2**20, include_dashboard=False, log_to_driver=False)
    try:
        handle = serve.run(Decode.bind(), name="transport", route_prefix=None)
        for transport in ("raw", "jpeg"):
            for _ in range(5):  # warm-up
                handle.remote(FramePayload.encode(frames[0], transport)).result()
            t = time.perf_counter()
            for i in range(rounds):
                handle.remote(FramePayload.encode(frames[i % len(frames)], transport)).result()
            out[f"{transport}_round_trip_ms"] = (time.perf_counter() - t) * 1e3 / rounds
            t = time.perf_counter()
            pending = []
            for i in range(rounds):
                pending.append(handle.remote(FramePayload.encode(frames[i % len(frames)], transport)))
                if len(pending) >= 8:
                    pending.pop(0).result()
            for r in pending:
                r.result()
            out[f"{transport}_fps_8_in_flight"] = rounds / (time.perf_counter() - t)
        serve.delete("transport")
    finally:
        ray.shutdown()
    return out


def bench_stream_costs(frames: list[np.ndarray]) -> dict:
    """CPU ms per frame of what a stream actor does besides waiting for the deployment: decode
    (PyAV, H.264 768x576), draw the boxes, encode the recording (libx264 veryfast), one core."""
    import tempfile

    from app.io.record import Recorder
    from app.io.sources import FileSource
    from app.pipeline.render import annotate
    from detector import Detector, DetectorConfig

    detections = Detector(DetectorConfig(device="cpu")).detect(frames[:1])[0]
    t = time.perf_counter()
    n = 0
    with FileSource(str(SAMPLE)) as source:
        for _ in source.frames():
            n += 1
            if n == 100:
                break
    decode = (time.perf_counter() - t) * 1e3 / n
    t = time.perf_counter()
    drawn = [annotate(f, detections) for f in frames]
    draw = (time.perf_counter() - t) * 1e3 / len(frames)
    with tempfile.TemporaryDirectory() as tmp:
        rec = Recorder(Path(tmp) / "x.mp4", time_base=__import__("fractions").Fraction(1, 10))
        t = time.perf_counter()
        for i, image in enumerate(drawn * 3):
            rec.write(image, i)
        rec.close()
        encode = (time.perf_counter() - t) * 1e3 / (3 * len(drawn))
    return {"decode_ms": decode, "draw_ms": draw, "encode_ms": encode, "boxes_drawn": len(detections)}


def bench_in_process(frames_n: int) -> dict:
    """The product's pipeline in one process on the same frames (the reference)."""
    from app.config import PipelineConfig
    from app.pipeline.pipeline import Pipeline
    from detector import Detector, DetectorConfig

    detector = Detector(DetectorConfig(device="cpu", precision="fp32"))
    detector.detect(sample_frames(1))  # warm-up
    t = time.perf_counter()
    stats = Pipeline(PipelineConfig(source_kind="video", source=str(SAMPLE), max_frames=frames_n), detector).run()
    return {"frames": stats.frames_written, "fps": stats.frames_written / (time.perf_counter() - t),
            "mean_latency_ms": stats.mean_latency_ms}


def bench_streams(session, counts: list[int], frames_n: int, live_s: float, tag: str,
                  modes: tuple[str, ...] = ("file", "live")) -> list[dict]:
    from app.serve.streams import parse_stream

    rows = []
    for mode in modes:
        for n in counts:
            names = [f"{tag}-{mode}{n}-{i}" for i in range(n)]
            extra = f"--max-frames {frames_n}" if mode == "file" else "--live"
            specs = [parse_stream(f"--name {name} --video {SAMPLE} {extra}") for name in names]
            before = load()
            t = time.perf_counter()
            session.start_streams(specs)  # returns once every actor has opened its source
            start_s, t = time.perf_counter() - t, time.perf_counter()
            if mode == "file":
                while not all(s.state in ("done", "failed", "stopped") for s in session.statuses() if s.name in names):
                    time.sleep(0.2)
                replicas = session.replica_status()  # their last 5 s
            else:
                time.sleep(live_s)
                replicas = session.replica_status()
                session.stop_streams()
            wall = time.perf_counter() - t
            final = [s for s in session.statuses() if s.name in names]
            written = sum(s.stats.frames_written for s in final)
            read = sum(s.stats.frames_read for s in final)
            row = {
                "mode": mode, "streams": n, "start_s": round(start_s, 2), "wall_s": round(wall, 2), "frames": written,
                # live: the sum of each stream's own rate (a live run may outlast its clip)
                "total_fps": written / wall if mode == "file" else sum(s.stats.mean_fps or 0.0 for s in final),
                "per_stream_fps": [round(s.stats.mean_fps or 0.0, 2) for s in final],
                "mean_latency_ms": float(np.mean([s.stats.mean_latency_ms or 0 for s in final])),
                "dropped": sum(s.stats.frames_dropped for s in final),
                "dropped_fraction": (1 - written / read) if read else 0.0,
                "retries": sum(s.retries for s in final),
                "mean_batch": float(np.mean([s.batch for s in final])),
                "replicas_last_5s": [{k: r[k] for k in ("fps", "batch", "busy")} for r in replicas],
                "load_before": before, "load_after": load(),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--streams", default="1,2,4")
    p.add_argument("--frames", type=int, default=40, help="frames per file stream")
    p.add_argument("--live-s", type=float, default=12.0,
                   help="seconds each live run lasts (less than the sample's 14.5 s: a live file ends with its clip)")
    p.add_argument("--modes", default="file,live", help="file and/or live streams")
    p.add_argument("--replicas", default="1", help="replica counts to try, comma-separated (CPUs shared out)")
    p.add_argument("--transport-rounds", type=int, default=60)
    p.add_argument("--parts", default="transport,costs,inprocess,serve", help="what to measure, comma-separated")
    args = p.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = [int(c) for c in args.streams.split(",")]

    import ray
    import torch

    from app.serve.cluster import ServeSession
    from app.serve.config import ServeConfig
    from detector import DetectorConfig

    results: dict = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
        "load_start": load(), "model": "default (assets/default_model.pt), fp32, CPU, 300 proposals",
        "clip": f"{SAMPLE.name} (768x576, 10 fps)",
    }
    frames = sample_frames(20)
    parts = args.parts.split(",")
    if "transport" in parts:
        results["transport"] = {"load_before": load(), **bench_transport(frames, args.transport_rounds), "load_after": load()}
        print(json.dumps(results["transport"]), flush=True)
    if "costs" in parts:
        results["stream_costs"] = {"load_before": load(), **bench_stream_costs(frames), "load_after": load()}
        print(json.dumps(results["stream_costs"]), flush=True)
    if "inprocess" in parts:
        results["in_process"] = {"load_before": load(), **bench_in_process(args.frames), "load_after": load()}
        print(json.dumps(results["in_process"]), flush=True)
    results["serve"] = []
    for replicas in (int(r) for r in args.replicas.split(",") if "serve" in parts):
        with ServeSession(ServeConfig(replicas=replicas, object_store_mb=256)) as session:
            session.deploy(DetectorConfig(device="cpu", precision="fp32"))
            rows = bench_streams(session, counts, args.frames, args.live_s, f"r{replicas}", tuple(args.modes.split(",")))
            for row in rows:
                row.update(replicas=replicas, replica_cpus=session.replica_cpus)
            results["serve"] += rows
    results["load_end"] = load()
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out_dir / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
