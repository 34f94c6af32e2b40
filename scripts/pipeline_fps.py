#!/usr/bin/env python3
"""End-to-end fps of the threaded pipeline vs a plain single-thread loop, on the same clip in the same run.

Both do the same work on every frame: decode (PyAV) → detect → draw → encode H.264 (PyAV). The plain
loop does it in sequence on one thread; the pipeline overlaps decoding, detection and drawing +
encoding on three threads. The plain loop also runs once more on a worker thread ("plain_thread"):
the detector itself can run at a different speed on the main thread, and that must not be credited
to the pipelining. The runs alternate (plain, plain_thread, pipeline, plain, ...) so that a machine
whose load changes is fair to all three. Also reported: the share of wall time spent outside the
detector's ``detect`` calls.

    python scripts/pipeline_fps.py [--video assets/sample.mp4] [--frames 60] [--rounds 2]

Model: the bundled default model when assets/default_model.pt exists, otherwise the paper model with
random weights (speed only; the script says which).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# As in app.cli.run: idle OpenMP threads sleep instead of spinning (see docs/pipeline.md); before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import av  # noqa: E402
import torch  # noqa: E402

from app.config import PipelineConfig  # noqa: E402
from app.io.record import Recorder  # noqa: E402
from app.io.sources import FileSource  # noqa: E402
from app.pipeline.pipeline import Pipeline  # noqa: E402
from app.pipeline.render import annotate, stats_line  # noqa: E402
from detector import Detector, DetectorConfig  # noqa: E402
from detector.factory import DEFAULT_MODEL_PATH  # noqa: E402
from detector.weights import WeightsError  # noqa: E402


class TimedDetector:
    """Forwards to a Detector and adds up the wall time spent inside ``detect``."""

    def __init__(self, detector: Detector) -> None:
        self.inner, self.seconds, self.calls = detector, 0.0, 0

    def detect(self, frames, **kwargs):
        t = time.perf_counter()
        try:
            return self.inner.detect(frames, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t
            self.calls += 1

    def __getattr__(self, name):
        return getattr(self.inner, name)


def plain_loop(video: str, detector: TimedDetector, frames: int, out: Path) -> dict:
    """read → detect → draw → write, one frame at a time on this thread."""
    source = FileSource(video)
    t0 = time.perf_counter()
    n = 0
    with source, Recorder(out, time_base=source.time_base, rate=source.rate) as rec:
        for frame in source.frames():
            det = detector.detect([frame.image])[0]
            text = stats_line(None, detector.last_times.as_dict(), detector.last_proposal_counts[0])
            rec.write(annotate(frame.image, det, text), frame.pts)
            n += 1
            if n == frames:
                break
    return {"frames": n, "wall_s": time.perf_counter() - t0}


def plain_loop_in_a_thread(video: str, detector: TimedDetector, frames: int, out: Path) -> dict:
    """The same plain loop, run on one worker thread: the detector then runs on a thread as it
    does in the pipeline, so the comparison isolates what the pipelining itself buys."""
    box: dict = {}

    def target():
        box["result"] = plain_loop(video, detector, frames, out)

    thread = threading.Thread(target=target, name="plain-loop")
    thread.start()
    thread.join()
    return box["result"]


def pipeline_run(video: str, detector: TimedDetector, frames: int, out: Path) -> dict:
    config = PipelineConfig(source_kind="video", source=video, record=str(out), overwrite=True, max_frames=frames,
                            batch_size=1, headless=True)
    t0 = time.perf_counter()
    stats = Pipeline(config, detector).run()
    return {"frames": stats.frames_written, "wall_s": time.perf_counter() - t0}


VARIANTS = {"plain": plain_loop, "plain_thread": plain_loop_in_a_thread, "pipeline": pipeline_run}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default=str(ROOT / "assets" / "sample.mp4"))
    parser.add_argument("--frames", type=int, default=60, help="frames per run (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="plain/pipeline pairs (default %(default)s)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    detector, model_note = None, "paper model, mobilenet_v2, RANDOM weights (assets/default_model.pt missing) — speed only"
    if DEFAULT_MODEL_PATH.exists():
        try:
            detector = TimedDetector(Detector(DetectorConfig(device=args.device)))
            model_note = f"default model ({DEFAULT_MODEL_PATH.name}: {detector.inner.info.name}, {detector.inner.info.arch})"
        except WeightsError as exc:
            model_note = f"paper model, mobilenet_v2, RANDOM weights (the default model did not load: {exc}) — speed only"
    if detector is None:
        detector = TimedDetector(Detector(DetectorConfig(model="paper", weights="random", device=args.device)))
    print(f"model: {model_note}", flush=True)
    with av.open(args.video) as c:
        warm = next(c.decode(video=0)).to_ndarray(format="rgb24")
    detector.inner.detect([warm])  # first call allocates; keep it out of both measurements

    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, fn in VARIANTS.items():
                detector.seconds, detector.calls = 0.0, 0
                res = fn(args.video, detector, args.frames, Path(tmp) / f"{name}{r}.mp4")
                res["detector_s"] = detector.seconds
                res["fps"] = res["frames"] / res["wall_s"]
                res["detect_ms_per_frame"] = 1e3 * detector.seconds / max(1, res["frames"])
                res["outside_detector_share"] = 1 - detector.seconds / res["wall_s"]
                runs[name].append(res)
                print(f"round {r + 1} {name:8s}: {res['frames']} frames in {res['wall_s']:.2f} s = {res['fps']:.2f} fps; "
                      f"detect() {res['detect_ms_per_frame']:.0f} ms/frame, outside detect(): {res['outside_detector_share']:.1%}",
                      flush=True)

    def mean(name, key):
        return sum(x[key] for x in runs[name]) / len(runs[name])

    summary = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
                   f"({torch.get_num_threads()} threads), device {detector.inner.device}",
        "load_average_1min": os.getloadavg()[0],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "model": model_note,
        "video": os.path.relpath(args.video, ROOT),
        "frames_per_run": args.frames,
        "rounds": args.rounds,
        **{f"{name}_{key}": mean(name, key) for name in VARIANTS
           for key in ("fps", "detect_ms_per_frame", "outside_detector_share")},
        "speedup_vs_plain": mean("pipeline", "fps") / mean("plain", "fps"),
        "speedup_vs_plain_thread": mean("pipeline", "fps") / mean("plain_thread", "fps"),
        "runs": runs,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
