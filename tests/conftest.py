"""Shared fixtures: small real data cut from the bundled sample clip, and a small, fast real detector."""

from __future__ import annotations

import os
import signal
import sys
import tempfile

# A test run started in the background by a shell without job control has SIGINT ignored, and a
# child inherits an ignored signal: run.py would then never see the Ctrl-C that tests send it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Before torch loads (pytest reads this file first): idle OpenMP threads sleep instead of spinning,
# as app.cli.run does. On this project's 2-core test machines, shared with other jobs, spinning made
# detect() calls in the main thread 10-30× slower (docs/pipeline.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The CPU probe's answers and int8 verdicts go to a throw-away folder, never the user's cache.
os.environ["FRCNN_CACHE_DIR"] = tempfile.mkdtemp(prefix="frcnn-test-cache-")
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "sample.mp4"
# The development media (optional): shared/ beside the checkout (as CI lays it out), else the
# workplace's copy; tests that need it skip without it.
MEDIA = next((p for p in (ROOT.parent / "shared" / "media", Path("/work/shared/media")) if p.is_dir()),
             ROOT.parent / "shared" / "media")
TINY = dict(model="paper", weights="random", backbone="resnet18", min_size=128, max_size=160, device="cpu",
            score_threshold=0.0)


def cut_clip(path: Path, n: int, *, source: Path = SAMPLE, codec: str = "libx264", options: dict | None = None,
             start: int = 0) -> Path:
    """Frames [start, start + n) of ``source`` re-encoded to ``path`` with their own pts (from the
    first one's) and time base."""
    with av.open(str(source)) as src, av.open(str(path), "w") as dst:
        stream_in = src.streams.video[0]
        out = dst.add_stream(codec, rate=stream_in.average_rate)
        out.width, out.height = stream_in.codec_context.width, stream_in.codec_context.height
        out.pix_fmt = "yuv420p"
        out.time_base = stream_in.time_base
        out.codec_context.time_base = stream_in.time_base
        out.options = options or {"preset": "ultrafast"}
        first = None
        for i, frame in enumerate(src.decode(stream_in)):
            if i >= start + n:
                break
            if i < start:
                continue
            first = frame.pts if first is None else first
            frame.pts -= first
            frame.pict_type = av.video.frame.PictureType.NONE
            for packet in out.encode(frame):
                dst.mux(packet)
        for packet in out.encode():
            dst.mux(packet)
    return path


def write_audio_only(path: Path, codec: str = "aac") -> Path:
    """A real file with one silent mono audio stream and no video ("aac" → .m4a, "pcm_s16le" → .wav)."""
    sample_format, dtype, samples = {"aac": ("fltp", np.float32, 1024), "pcm_s16le": ("s16", np.int16, 800)}[codec]
    with av.open(str(path), "w") as c:
        stream = c.add_stream(codec, rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, samples), dtype), format=sample_format, layout="mono")
        frame.sample_rate = 8000
        c.mux(stream.encode(frame))
        c.mux(stream.encode())
    return path


def decode_pts(path: Path | str) -> tuple[list[int], Fraction]:
    """Every frame's pts and the stream's time base, decoded straight with PyAV."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return [f.pts for f in c.decode(stream)], Fraction(stream.time_base)


@pytest.fixture(scope="session")
def clip10(tmp_path_factory) -> Path:
    """A 10-frame H.264 mp4 (768×576, 10 fps) cut from the sample clip."""
    return cut_clip(tmp_path_factory.mktemp("clips") / "clip10.mp4", 10)


@pytest.fixture(scope="session")
def tiny_detector():
    """A real Faster R-CNN (paper model, ResNet-18, 128-px input, random weights): tens of ms a frame."""
    from detector import Detector, DetectorConfig

    return Detector(DetectorConfig(**TINY))


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory, tiny_detector) -> Path:
    """The tiny detector as a checkpoint file, so that ``run.py --weights FILE`` is fast."""
    from detector.weights import save_checkpoint

    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    arch = {"backbone": "resnet18", "min_size": 128, "max_size": 160}
    return save_checkpoint(path, tiny_detector.model, model_name="paper", arch=arch, class_names=tiny_detector.class_names)


@pytest.fixture()
def frame_rgb() -> np.ndarray:
    """One real RGB frame of the sample clip (576×768)."""
    with av.open(str(SAMPLE)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def python() -> str:
    return sys.executable
