"""Recording: real H.264 through PyAV, the source's timestamps kept however slow the detector,
29.97 fps exact, odd sizes padded, and a SIGINT mid-run that still leaves a playable file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from app.config import PipelineConfig
from app.io.record import Recorder
from app.pipeline.pipeline import Pipeline
from tests.app.fakes import FakeDetector
from tests.conftest import ROOT, SAMPLE, decode_pts


def duration_s(path) -> Fraction:
    """Shown duration: last pts + one frame, in seconds, from the decoded frames."""
    pts, tb = decode_pts(path)
    step = pts[1] - pts[0]
    return (pts[-1] - pts[0] + step) * tb


def test_slow_detector_keeps_the_source_duration(clip10, tmp_path):
    out = tmp_path / "slow.mp4"
    cfg = PipelineConfig(source_kind="video", source=str(clip10), record=str(out))
    t = time.monotonic()
    Pipeline(cfg, FakeDetector(delay_s=0.15)).run()  # ~6.7 fps detector on a 10 fps clip
    assert time.monotonic() - t > 1.4  # it really was slower than the source
    src_pts, src_tb = decode_pts(clip10)
    out_pts, out_tb = decode_pts(out)
    assert len(out_pts) == 10
    assert [p * out_tb for p in out_pts] == [p * src_tb for p in src_pts]
    assert duration_s(out) == duration_s(clip10) == Fraction(1)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.duration == pytest.approx(1_000_000, rel=0.02)


def test_29_97_stays_29_97(tmp_path):
    out = tmp_path / "ntsc.mp4"
    tb = Fraction(1, 30000)
    with Recorder(out, time_base=tb, rate=Fraction(30000, 1001)) as rec:
        for i in range(30):
            rec.write(np.full((48, 64, 3), i * 8, np.uint8), i * 1001)
    pts, out_tb = decode_pts(out)
    assert [p * out_tb for p in pts] == [Fraction(i * 1001, 30000) for i in range(30)]
    with av.open(str(out)) as c:
        assert c.streams.video[0].average_rate == Fraction(30000, 1001)


def test_odd_size_is_padded_not_cropped(tmp_path):
    out = tmp_path / "odd.mp4"
    image = np.zeros((49, 65, 3), np.uint8)
    image[:, -1] = 255  # the last column must survive
    with Recorder(out, time_base=Fraction(1, 10)) as rec:
        for i in range(3):
            rec.write(image, i)
    assert rec.padded == (1, 1) and rec.size == (66, 50)
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape == (50, 66, 3)
    assert frame[10:40, 64].mean() > 200 and frame[10:40, 65].mean() < 40


def test_out_of_order_pts_is_skipped_and_counted(tmp_path):
    with Recorder(tmp_path / "o.mp4", time_base=Fraction(1, 10)) as rec:
        assert rec.write(np.zeros((16, 16, 3), np.uint8), 0)
        assert rec.write(np.zeros((16, 16, 3), np.uint8), 2)
        assert not rec.write(np.zeros((16, 16, 3), np.uint8), 2)
    assert rec.frames_written == 2 and rec.frames_skipped == 1


def test_a_write_error_without_text_still_stops_in_one_line(tmp_path):
    class Failing:  # the encoder raising an OSError that has neither text nor errno
        def __init__(self, stream):
            self.stream = stream

        def encode(self, frame=None):
            if frame is not None:
                raise OSError()
            return self.stream.encode()

    with Recorder(tmp_path / "f.mp4", time_base=Fraction(1, 10)) as rec:
        assert rec.write(np.zeros((16, 16, 3), np.uint8), 0)
        rec._stream = Failing(rec._stream)
        assert not rec.write(np.zeros((16, 16, 3), np.uint8), 1)
    assert rec.failed == f"recording {tmp_path / 'f.mp4'} stopped after 1 frames: OSError"
    assert not rec.write(np.zeros((16, 16, 3), np.uint8), 2) and rec.frames_written == 1


def test_close_twice_and_never_opened(tmp_path):
    rec = Recorder(tmp_path / "never.mp4", time_base=Fraction(1, 10))
    rec.close()
    rec.close()
    assert not (tmp_path / "never.mp4").exists()


def test_sigint_mid_record_leaves_a_playable_file(tmp_path, tiny_weights):
    interrupt_mid_record(tmp_path, tiny_weights, signal.SIGINT)


@pytest.mark.slow
def test_sigterm_takes_the_same_path(tmp_path, tiny_weights):
    interrupt_mid_record(tmp_path, tiny_weights, signal.SIGTERM)


def interrupt_mid_record(tmp_path, tiny_weights, signum) -> None:
    out = tmp_path / "interrupted.mp4"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.Popen(
        [sys.executable, "run.py", "--video", str(SAMPLE), "--record", str(out), "--headless", "--weights", str(tiny_weights)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and out.stat().st_size > 2000) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(0.5)
        assert proc.poll() is None, f"run ended before the interrupt: {proc.communicate()}"
        proc.send_signal(signum)
        t = time.monotonic()
        stdout, stderr = proc.communicate(timeout=20)
        stopped_in = time.monotonic() - t
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert stopped_in < 5  # the threads stop within a second; interpreter exit takes the rest
    pts, tb = decode_pts(out)  # the partial recording decodes back
    assert 1 <= len(pts) < 145
    assert [p * tb for p in pts] == [Fraction(i, 10) for i in range(len(pts))]


@pytest.mark.slow
def test_whole_sample_every_frame_recorded_with_its_timestamp(tmp_path, tiny_weights):
    """All 145 frames of the bundled clip through run.py: frames in = frames out, equal timestamps."""
    out = tmp_path / "all.mp4"
    proc = subprocess.run([sys.executable, "run.py", "--video", str(SAMPLE), "--record", str(out), "--headless",
                           "--weights", str(tiny_weights)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert decode_pts(out) == decode_pts(SAMPLE)


@pytest.mark.slow
def test_real_mpeg4_avi_decodes_every_frame():
    from app.io.sources import FileSource
    from tests.conftest import MEDIA

    path = MEDIA / "vtest.avi"
    if not path.exists():
        pytest.skip("shared media not present")
    with FileSource(str(path)) as source:
        frames = sum(1 for _ in source.frames())
    assert frames == source.total_frames == 795 and source.bad_frames == 0


def test_fragmented_mp4_decodes(tmp_path):
    out = tmp_path / "frag.mp4"
    with Recorder(out, time_base=Fraction(1, 10), fragmented=True) as rec:
        for i in range(12):
            rec.write(np.full((32, 48, 3), i * 20, np.uint8), i)
    pts, tb = decode_pts(out)
    assert [p * tb for p in pts] == [Fraction(i, 10) for i in range(12)]


def test_a_frame_of_another_size_is_scaled_and_counted(tmp_path):
    out = tmp_path / "sizes.mp4"
    with Recorder(out, time_base=Fraction(1, 10)) as rec:
        rec.write(np.zeros((32, 48, 3), np.uint8), 0)
        rec.write(np.full((64, 96, 3), 200, np.uint8), 1)
    assert rec.frames_resized == 1 and rec.size == (48, 32)
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert [f.shape for f in frames] == [(32, 48, 3)] * 2 and frames[1].mean() > 150


def test_a_name_with_a_colon_is_a_file_not_a_protocol(tmp_path, monkeypatch):
    """A recording named by its time, given relative ("2024-01-01T10:00.mp4"): FFmpeg must not read
    "2024-01-01T10" as a protocol (it said "Protocol not found" and the recording was lost)."""
    monkeypatch.chdir(tmp_path)
    with Recorder("2024-01-01T10:00.mp4", time_base=Fraction(1, 10)) as rec:
        for i in range(3):
            rec.write(np.full((32, 48, 3), i * 60, np.uint8), i)
    assert rec.failed is None
    pts, tb = decode_pts(tmp_path / "2024-01-01T10:00.mp4")
    assert [p * tb for p in pts] == [Fraction(i, 10) for i in range(3)]
