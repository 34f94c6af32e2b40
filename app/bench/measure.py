"""The three measurements of the benchmark: the staged detector on frames in memory, the naive
single-thread loop (read → torchvision model → draw → write), and the pipeline end to end.

The detector is measured on frames decoded beforehand, so that its fps is the detector's alone; the
two loops decode, detect, draw and encode the same first ``n`` frames of the same file, so that their
ratio is a like-for-like speed-up.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from app.errors import UserError
from detector.detections import Detections
from detector.detector import STAGES, Detector, StageTimes
from detector.stages import detect_timed

from .stats import median_p90

T = TypeVar("T")


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded frame: position in the file, seconds since the first frame (exact), RGB uint8 [H, W, 3]."""

    index: int
    timestamp: Fraction
    image: np.ndarray


@dataclass
class DetectorRun:
    """Per-frame measurements of the staged detector (after warm-up)."""

    times: list[StageTimes] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)  # the whole ``detect`` call, per frame
    proposals: list[int] = field(default_factory=list)  # RPN proposals actually kept, per frame
    detections: dict[int, Detections] = field(default_factory=dict)  # by frame index

    @property
    def fps(self) -> float:
        """Frames per second over the measured frames (frames / summed call time)."""
        total = sum(self.wall_ms)
        return 1000.0 * len(self.wall_ms) / total if total > 0 else float("nan")

    def stage_stats(self) -> dict[str, tuple[float, float]]:
        """{stage: (median ms, p90 ms)} for "total" (the summed stages), then every stage."""
        return {stage: median_p90([getattr(t, stage) for t in self.times]) for stage in ("total", *STAGES)}


@dataclass
class LoopRun:
    """An end-to-end run (decode → detect → draw → encode) over the first frames of a file."""

    wall_s: float
    timestamps: list[Fraction]  # of the frames that were processed, in order, relative to the first

    @property
    def frames(self) -> int:
        return len(self.timestamps)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else float("nan")


def open_video(path: Path):
    """A PyAV container with a video stream, or ``UserError`` naming the file and the reason."""
    import av

    if not path.exists():
        raise UserError(f"video {path} does not exist")
    if not path.is_file():
        raise UserError(f"video {path} is not a file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot open video {path}: {exc}") from None
    if not container.streams.video:
        container.close()
        raise UserError(f"{path} has no video stream")
    return container


def read_frames(path: Path, n: int) -> list[DecodedFrame]:
    """The first ``n`` decodable frames of ``path`` (fewer if the file is shorter), RGB.

    Timestamps are relative to the first frame, as the pipeline's sources keep them."""
    import av

    frames: list[DecodedFrame] = []
    with open_video(path) as container:
        try:
            for i, ts, frame in _decoded(container, n):
                frames.append(DecodedFrame(i, ts, frame.to_ndarray(format="rgb24")))
        except av.error.FFmpegError as exc:
            if not frames:
                raise UserError(f"cannot decode video {path}: {exc}") from None
    if not frames:
        raise UserError(f"video {path} holds no decodable frames")
    return frames


def _decoded(container, n: int):
    """(index, seconds since the first frame, PyAV frame) of the first ``n`` frames of ``container``'s
    video, the seconds exact; a stream without pts counts frames at its average rate."""
    stream = container.streams.video[0]
    first = None
    for i, frame in enumerate(itertools.islice(container.decode(stream), n)):
        if frame.pts is not None and frame.time_base is not None:
            ts = frame.pts * Fraction(frame.time_base)
        else:
            ts = Fraction(i) / Fraction(stream.average_rate or Fraction(25))
        first = ts if first is None else first
        yield i, ts - first, frame


def on_worker_thread(fn: Callable[[], T], name: str = "bench-measure") -> T:
    """Run ``fn`` on a fresh thread and return its result (its exception is re-raised here).

    The pipeline detects on a worker thread; the detector sweep and the naive loop run on one too,
    so that all three measure under the same threading — also where OMP_WAIT_POLICY=PASSIVE is not
    in force (a test, an imported sweep): with libgomp's active waiting, the same detector driven
    from an oversubscribed main thread ran up to 3–5× slower than from a fresh worker thread.
    """
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 — handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)  # short joins: Ctrl-C reaches the main thread promptly
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


# --------------------------------------------------------------------------------- the detector
def measure_detector(detector: Detector, frames: Sequence[DecodedFrame], warmup: int,
                     tick: Callable[[], None] = lambda: None) -> DetectorRun:
    """Run ``detector`` one frame at a time (batch 1, the live case) over ``frames``.

    The first ``warmup`` calls (on the first frames, cycled) are not counted: they pay for lazy
    initialisation, allocator growth and, on CUDA, kernel selection. Stage times are synchronised
    on the device (``timing=True``).
    """
    for i in range(warmup):
        detector.detect(frames[i % len(frames)].image, timing=True)
        tick()
    run = DetectorRun()
    clock = time.perf_counter
    for frame in frames:
        start = clock()
        timed = detect_timed(detector, frame.image, timing=True)
        run.wall_ms.append((clock() - start) * 1e3)
        (det,) = timed.detections
        run.times.append(timed.times)
        run.proposals.extend(timed.proposals)
        run.detections[frame.index] = det
        tick()
    return run


# --------------------------------------------------------------------------------- the tracker
def measure_tracker(run: DetectorRun, frames: Sequence[DecodedFrame]) -> list[float] | None:
    """ms per frame of the tracker (``app.analytics.track.Tracker``, ByteTrack) over the detector's own
    detections of ``frames``, in order, with their timestamps — the stage ``--track`` adds after
    the detector. None when the ``trackers`` package is missing."""
    from app.analytics.track import Tracker

    span = float(frames[-1].timestamp - frames[0].timestamp) if len(frames) > 1 else 0.0
    rate = (len(frames) - 1) / span if span > 0 else None
    try:
        tracker = Tracker(rate)
    except UserError:
        return None
    times = []
    for frame in frames:
        tracker.update(run.detections[frame.index], float(frame.timestamp))
        times.append(tracker.last_ms)
    return times


# --------------------------------------------------------------------------------- the naive loop
def naive_loop(model: nn.Module, path: Path, n: int, record: Path, device: torch.device,
               class_names: Sequence[str], warmup: int = 1, tick: Callable[[], None] = lambda: None) -> LoopRun:
    """The plain baseline: one Python thread that reads a frame, calls the torchvision model
    directly (``model([tensor])``), draws the boxes with OpenCV and encodes the frame — then the next.

    ``model`` is used as it comes (its own proposal counts and precision: fp32). It is warmed up on
    the first frame ``warmup`` times before the clock starts, as the detector is. The encoder is
    H.264 through PyAV with the source's timestamps, as the pipeline's recorder.
    """
    import av

    model = model.eval().to(device)
    (first,) = read_frames(path, 1)
    with torch.inference_mode():
        for _ in range(warmup):
            model([_to_tensor(first.image, device)])
            tick()
    timestamps: list[Fraction] = []
    start = time.perf_counter()
    with open_video(path) as container, av.open(str(record), "w") as out:
        encoder = None
        try:
            for _, ts, frame in _decoded(container, n):
                rgb = frame.to_ndarray(format="rgb24")
                with torch.inference_mode():
                    result = model([_to_tensor(rgb, device)])[0]
                boxes = result["boxes"].float().cpu().numpy()
                scores = result["scores"].float().cpu().numpy()
                labels = result["labels"].cpu().numpy()
                image = _draw(rgb, boxes, scores, labels, class_names)
                if encoder is None:
                    encoder = _add_h264(out, container.streams.video[0], image.shape[1], image.shape[0])
                video_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                video_frame.pts = int(ts / encoder.codec_context.time_base)
                out.mux(encoder.encode(video_frame))
                timestamps.append(ts)
                tick()
        finally:
            if encoder is not None:
                out.mux(encoder.encode())
    return LoopRun(time.perf_counter() - start, timestamps)


def _to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(rgb).to(device).permute(2, 0, 1).float().div_(255.0)


def _draw(rgb: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
          class_names: Sequence[str]) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    image = np.ascontiguousarray(rgb[: h - h % 2, : w - w % 2])  # H.264 in yuv420p needs even sizes
    for (x1, y1, x2, y2), score, label in zip(boxes.astype(int), scores, labels, strict=True):
        cv2.rectangle(image, (x1, y1), (x2, y2), (0, 255, 0), 2)
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        cv2.putText(image, f"{name} {score:.2f}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 255, 0), 1, cv2.LINE_AA)
    return image


def _add_h264(out, source_stream, width: int, height: int):
    rate = source_stream.average_rate or Fraction(25)
    stream = out.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.time_base = Fraction(1, 1000) if source_stream.time_base is None else Fraction(source_stream.time_base)
    stream.options = {"crf": "23", "preset": "veryfast"}  # the pipeline recorder's settings
    return stream


# --------------------------------------------------------------------------------- the pipeline
def pipeline_loop(detector: Detector, path: Path, n: int, record: Path,
                  tick: Callable[[], None] = lambda: None, **config_changes) -> LoopRun:
    """The product's pipeline end to end on the first ``n`` frames of ``path``: its file source
    (every frame, none dropped), inference worker, drawing and H.264 recorder threads, with
    ``detector`` already built and warm. The clock runs from opening the file to the closed
    recording, as the naive loop's does. ``config_changes``: other ``PipelineConfig`` fields
    (decoder / encoder threads, a target fps)."""
    from app.config import PipelineConfig
    from app.pipeline.pipeline import Pipeline

    timestamps: list[Fraction] = []

    def on_result(result, annotated) -> None:
        timestamps.append(Fraction(result.frame.timestamp))
        tick()

    config = PipelineConfig(source_kind="video", source=str(path), record=str(record), overwrite=True,
                            max_frames=n, policy="every_frame", headless=True, **config_changes)
    start = time.perf_counter()
    Pipeline(config, detector, on_result=on_result).run()
    return LoopRun(time.perf_counter() - start, timestamps)
