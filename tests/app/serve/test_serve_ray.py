"""``serve`` on a real one-node Ray cluster (small: 2 CPUs, a 128 MB object store), 1 replica of the
default model (fp32, CPU): two file streams detected frame for frame as the in-process detector does,
live knobs on the running deployment, a killed replica replaced by Ray while its stream carries on,
nothing left running afterwards, and the command end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("ray.serve", reason="needs Ray Serve: pip install -e '.[serve]'")

from app.io.export import read_rows  # noqa: E402
from app.io.sources import FileSource  # noqa: E402
from app.serve.batching import FramePayload  # noqa: E402
from app.serve.cluster import ServeSession  # noqa: E402
from app.serve.config import ServeConfig  # noqa: E402
from app.serve.streams import parse_stream  # noqa: E402
from detector import Detector, DetectorConfig  # noqa: E402
from tests.conftest import ROOT, SAMPLE  # noqa: E402
from tests.matching import assert_same_detections, detections_from_rows  # noqa: E402

# precision and layout named, not "auto": a replica builds its detector through the CPU fast path, whose
# probe could pick channels_last there (boxes equal only to ~1e-5, enough to swap two near-equal rows)
MODEL = DetectorConfig(model="default", weights="default", device="cpu", precision="fp32", memory_format="contiguous",
                       proposals=300, score_threshold=0.5)


def cut_resized(path: Path, start: int, n: int, size: tuple[int, int]) -> Path:
    """Frames start..start+n-1 of the sample, scaled to ``size`` (another stream, another frame size)."""
    with av.open(str(SAMPLE)) as src, av.open(str(path), "w") as dst:
        out = dst.add_stream("libx264", rate=10)
        out.width, out.height = size
        out.pix_fmt = "yuv420p"
        out.options = {"preset": "ultrafast"}
        for i, frame in enumerate(src.decode(video=0)):
            if i >= start + n:
                break
            if i >= start:
                f = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24").reformat(
                    width=size[0], height=size[1], format="yuv420p")
                f.pts = i - start
                for packet in out.encode(f):
                    dst.mux(packet)
        for packet in out.encode():
            dst.mux(packet)
    return path


def frames_of(path) -> list[np.ndarray]:
    with FileSource(str(path)) as source:
        return [f.image for f in source.frames()]


@pytest.fixture(scope="module")
def local_detector():
    return Detector(MODEL)


@pytest.fixture(scope="module")
def session():
    s = ServeSession(ServeConfig(num_cpus=2, object_store_mb=128, replicas=1, retry_for_s=180))
    try:
        s.deploy(MODEL)
        yield s
    finally:
        s.close()


def assert_export_equals(rows: list[dict], expected) -> None:
    assert sorted({r["frame"] for r in rows}) == [i for i, d in enumerate(expected) if len(d)]
    for i, det in enumerate(expected):
        mine = detections_from_rows([r for r in rows if r["frame"] == i], det.class_names)
        assert len(mine) == len(det), f"frame {i}"
        # export rounds boxes to 0.01 px and scores to 1e-5; rows may swap on near-equal scores
        assert_same_detections(mine, det, iou=0.999, score_atol=2e-5, capped=True, what=f"frame {i}")


def test_two_file_streams_every_frame_equal_to_in_process(session, local_detector, clip10, tmp_path):
    other = cut_resized(tmp_path / "other.mp4", 20, 8, (640, 480))
    specs = [parse_stream(f"--name a --video {clip10} --export {tmp_path / 'a.json'}"),
             parse_stream(f"--name b --video {other} --export {tmp_path / 'b.csv'}")]
    started = session.start_streams(specs)
    assert [s.state for s in started] == ["running", "running"]
    assert session.wait(600)
    final = {s.name: s for s in session.statuses() if s.name in ("a", "b")}
    for name, clip, n in (("a", clip10, 10), ("b", other, 8)):
        s = final[name]
        assert s.state == "done" and s.error is None, s
        assert (s.stats.frames_read, s.stats.frames_written, s.stats.frames_dropped) == (n, n, 0)
        expected = [local_detector.detect([f])[0] for f in frames_of(clip)]
        assert sum(len(d) for d in expected) > n  # people in every clip: the comparison compares boxes
        assert_export_equals(read_rows(tmp_path / ("a.json" if name == "a" else "b.csv")), expected)
    assert session.replica_status()[0]["frames"] >= 18


def test_live_knobs_change_the_running_deployment(session, frame_rgb):
    def ask():
        return session.handle.remote(FramePayload.encode(frame_rgb)).result(timeout_s=120)

    before = ask()
    assert before.proposals > 50 and len(before.detections) > 0
    try:
        knobs = session.set_knobs(proposals=50, score_threshold=0.999)
        assert (knobs.proposals, knobs.score_threshold) == (50, 0.999)
        after = ask()
        assert after.proposals <= 50 and len(after.detections) < len(before.detections)
        assert all(r["proposals"] == 50 for r in session.replica_status())
    finally:
        session.set_knobs(proposals=MODEL.proposals, score_threshold=MODEL.score_threshold)
    again = ask()
    assert again.proposals == before.proposals and len(again.detections) == len(before.detections)


def test_a_killed_replica_is_replaced_and_the_stream_carries_on(session, local_detector, tmp_path):
    old_pid = session.handle.status.remote().result(timeout_s=60)["pid"]
    spec = parse_stream(f"--name k --video {SAMPLE} --max-frames 40 --export {tmp_path / 'k.json'}")
    session.start_streams([spec])
    deadline = time.monotonic() + 300
    while next(s for s in session.statuses() if s.name == "k").stats.frames_written < 4:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.kill(old_pid, signal.SIGKILL)
    assert session.wait(600)
    s = next(s for s in session.statuses() if s.name == "k")
    assert s.state == "done" and s.error is None, s
    # Requests the dead replica held are failed by Ray and sent again (by Serve's router, or by
    # RemoteDetector: ``retries``); either way no frame is lost.
    assert s.stats.frames_written == 40 and s.stats.frames_dropped == 0, s
    new_pid = session.handle.status.remote().result(timeout_s=60)["pid"]
    assert new_pid != old_pid
    expected = [local_detector.detect([f])[0] for f in frames_of(SAMPLE)[:40]]
    assert_export_equals(read_rows(tmp_path / "k.json"), expected)


def test_a_replaced_replica_comes_back_with_the_live_knobs(session):
    """Knobs changed while running survive a replica's death: the new one reads them from the board."""
    try:
        session.set_knobs(proposals=120, score_threshold=0.6)
        old_pid = session.handle.status.remote().result(timeout_s=60)["pid"]
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 300
        while True:
            rows = [r for r in session.replica_status() if r["pid"] != old_pid]
            if rows:
                break
            assert time.monotonic() < deadline, "no replica came back"
            time.sleep(1.0)
        assert (rows[0]["proposals"], rows[0]["score_threshold"]) == (120, 0.6)
    finally:
        session.set_knobs(proposals=MODEL.proposals, score_threshold=MODEL.score_threshold)


def test_close_leaves_no_ray_process(session):
    session_dir = session.session_dir
    assert session_dir and Path(session_dir).is_dir()
    session.close()
    deadline = time.monotonic() + 30
    while (left := ray_processes(session_dir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, left


def ray_processes(session_dir: str) -> list[str]:
    """Processes whose command line names this cluster's session folder (raylet, GCS, workers)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if session_dir in cmd:
            found.append(f"{proc.name}: {cmd[:120]}")
    return found


def test_serve_command_end_to_end(clip10, tmp_path):
    out = subprocess.run(
        [sys.executable, "run.py", "serve", "--num-cpus", "2", "--object-store-mb", "128",
         "--stream", f"--name one --video {clip10} --export {tmp_path / 'one.json'} --max-frames 4",
         "--stream", f"--name two --video {clip10} --record {tmp_path / 'two.mp4'} --max-frames 4"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"one: detections {tmp_path / 'one.json'}" in out.stdout and "from 4 frames" in out.stdout
    assert f"two: recording {tmp_path / 'two.mp4'} (4 frames)" in out.stdout
    table = out.stderr.splitlines()
    assert any(line.split()[:3] == ["one", "done", "4/4"] for line in table), out.stderr
    assert "Traceback" not in out.stderr


def test_ctrl_c_stops_the_streams_and_finalises_the_recording(tmp_path):
    out_mp4 = tmp_path / "cam.mp4"
    proc = subprocess.Popen(
        [sys.executable, "run.py", "serve", "--num-cpus", "2", "--object-store-mb", "128",
         "--stream", f"--name cam --video {SAMPLE} --live --record {out_mp4}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out_mp4.exists() and out_mp4.stat().st_size > 0):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "no recording started"
            time.sleep(0.5)
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "interrupted: streams stopped, outputs finalised" in stderr and "Traceback" not in stderr
    assert f"cam: recording {out_mp4}" in stdout
    with av.open(str(out_mp4)) as c:  # a finalised MP4: it opens and every frame decodes
        assert sum(1 for _ in c.decode(video=0)) >= 1
