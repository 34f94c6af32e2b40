"""Nothing lost when the process dies: real runs of run.py killed with SIGKILL, segmented recordings,
a file-size limit standing in for a full disk, and (slow) a 10 000-frame soak that stays flat."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from fractions import Fraction

import av
import pytest

from app.io.export import read_rows
from tests.conftest import ROOT, SAMPLE, cut_clip, decode_pts

TINY_RUN = ("--headless", "--score-threshold", "0", "--proposals", "20")


def no_display_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}


def run_py(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *map(str, args)], cwd=ROOT, env=no_display_env(),
                          capture_output=True, text=True, timeout=300, **kwargs)


def jsonl_frames(path, running: bool = False) -> list[int]:
    """The frame of every line; each line must parse on its own (a torn last line would not).
    ``running``: the writer is still at work, so a read may meet its frame's write() half done (a
    frame's rows are one write, which a concurrent read can see in part): only whole lines count."""
    if not path.exists():
        return []
    text = path.read_text()
    if running:
        text = text[: text.rfind("\n") + 1]
    return [json.loads(line)["frame"] for line in text.splitlines()]


def test_sigkill_leaves_a_playable_recording_and_a_whole_export(tmp_path, tiny_weights):
    """Killed without warning mid-run: the fragmented MP4 decodes, with the source's timestamps, up to
    about a second of video before the last exported frame; the .jsonl has every frame up to the kill."""
    out, dets = tmp_path / "k.mp4", tmp_path / "k.jsonl"
    proc = subprocess.Popen([sys.executable, "run.py", "--video", str(SAMPLE), "--record", str(out), "--export", str(dets),
                             "--weights", str(tiny_weights), *TINY_RUN],
                            cwd=ROOT, env=no_display_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(set(jsonl_frames(dets, running=True))) < 30 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, f"run ended before the kill: {proc.communicate()}"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    frames = jsonl_frames(dets)
    exported = max(frames) + 1
    assert 30 <= exported < 145  # really cut short
    assert sorted(set(frames)) == list(range(exported))  # every frame up to the kill (each has boxes at score ≥ 0)
    pts, tb = decode_pts(out)
    src_pts, src_tb = decode_pts(SAMPLE)
    assert [p * tb for p in pts] == [p * src_tb for p in src_pts[: len(pts)]]  # monotonic, the source's own times
    # At most the fragment in progress (0.5 s) and the encoder's frames (lookahead 5 + its threads):
    # measured 0.7-1.1 s at this 10 fps clip.
    lost_s = (exported - len(pts)) / 10
    assert lost_s <= 1.3, f"{len(pts)} frames decode of {exported} exported: {lost_s} s of video lost"


def test_segments_split_the_recording_and_refuse_a_restart(tmp_path, tiny_weights):
    """35 frames at 10 fps cut every second: 4 files of 10, 10, 10, 5 frames, each decoding alone from
    a keyframe, whose timestamps continue; the index lists them; a rerun needs --overwrite."""
    clip = cut_clip(tmp_path / "clip35.mp4", 35)
    out = tmp_path / "seg.mp4"
    proc = run_py("--video", clip, "--record", out, "--segment", "1", "--export", tmp_path / "d.json",
                  "--weights", tiny_weights, *TINY_RUN)
    assert proc.returncode == 0, proc.stderr
    files = sorted(tmp_path.glob("seg-*.mp4"))
    assert [f.name for f in files] == [f"seg-0000{i}.mp4" for i in range(1, 5)] and not out.exists()
    src_pts, src_tb = decode_pts(clip)
    seen = []
    for f in files:
        with av.open(str(f)) as c:
            first = next(c.demux(video=0))
            assert first.is_keyframe, f
        pts, tb = decode_pts(f)
        seen += [p * tb for p in pts]
        assert len(pts) == (5 if f == files[-1] else 10)
    assert seen == [p * src_tb for p in src_pts]  # together: every frame, the source's timestamps
    index = json.loads((tmp_path / "seg.segments.json").read_text())
    assert [s["file"] for s in index["segments"]] == [f.name for f in files]
    assert [(s["first_s"], s["last_s"], s["frames"]) for s in index["segments"]] == [
        (0.0, 0.9, 10), (1.0, 1.9, 10), (2.0, 2.9, 10), (3.0, 3.4, 5)]
    assert all(s["complete"] and s["first_wall"] <= s["last_wall"] for s in index["segments"])
    assert "35 frames in 4 segment(s)" in proc.stdout

    before = {f: f.stat().st_mtime_ns for f in files}
    again = run_py("--video", clip, "--record", out, "--segment", "1", "--weights", tiny_weights, *TINY_RUN)
    assert again.returncode == 2 and again.stderr.count("\n") == 1, again.stderr
    assert "seg-00001.mp4" in again.stderr and "--overwrite" in again.stderr
    assert {f: f.stat().st_mtime_ns for f in files} == before


def test_segments_and_jsonl_for_several_streams(tmp_path, tiny_weights):
    """Two streams: each records its own segments (out-<stream>-00001.mp4, ...); one .jsonl for both."""
    a, b = cut_clip(tmp_path / "a.mp4", 15), cut_clip(tmp_path / "b.mp4", 12)
    dets = tmp_path / "d.jsonl"
    proc = run_py("--video", a, "--video", b, "--record", tmp_path / "out.mp4", "--segment", "1", "--export", dets,
                  "--weights", tiny_weights, *TINY_RUN)
    assert proc.returncode == 0, proc.stderr
    for name, n in (("a", 15), ("b", 12)):
        files = sorted(tmp_path.glob(f"out-{name}-0*.mp4"))
        assert [len(decode_pts(f)[0]) for f in files] == [10, n - 10]
        index = json.loads((tmp_path / f"out-{name}.segments.json").read_text())
        assert sum(s["frames"] for s in index["segments"]) == n
    rows = read_rows(dets)
    assert {(r["stream"], r["frame"]) for r in rows} == {*(("a", i) for i in range(15)), *(("b", i) for i in range(12))}


def limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_a_full_disk_stops_one_output_and_keeps_the_others(tmp_path, tiny_weights):
    """A file-size limit (what a full disk does to the next write) between the export's size and the
    recording's: the recording stops with one line and keeps what it wrote, the export is complete,
    the run goes to its end and exits 4."""
    clip = cut_clip(tmp_path / "clip30.mp4", 30)
    free = run_py("--video", clip, "--record", tmp_path / "free.mp4", "--export", tmp_path / "free.csv",
                  "--weights", tiny_weights, "--classes", "person", *TINY_RUN)
    assert free.returncode == 0, free.stderr
    export_size, record_size = (tmp_path / "free.csv").stat().st_size, (tmp_path / "free.mp4").stat().st_size
    assert export_size < record_size / 2, (export_size, record_size)  # room for a limit between them
    limit = (export_size + record_size) // 2
    out, dets = tmp_path / "full.mp4", tmp_path / "full.csv"
    proc = run_py("--video", clip, "--record", out, "--export", dets, "--weights", tiny_weights, "--classes", "person",
                  *TINY_RUN, preexec_fn=limit_file_size(limit))
    assert proc.returncode == 4, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"recording {out} stopped after" in errors[0] and "File too large" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert "frames: 30 read, 30 processed, 30 written" in proc.stderr  # the run went on to the end
    assert (tmp_path / "full.csv").read_bytes() == (tmp_path / "free.csv").read_bytes()  # the export is whole
    pts, tb = decode_pts(out)  # what was recorded before the limit decodes, with its timestamps
    assert 1 <= len(pts) < 30 and out.stat().st_size <= limit
    assert [p * tb for p in pts] == [Fraction(i, 10) for i in range(len(pts))]


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def open_files() -> list[str]:
    """What this process's file descriptors point at (one that closes meanwhile is left out)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return out


@pytest.mark.slow
def test_soak_10000_frames_with_segments_stays_flat(tmp_path):
    """10 000 frames through the pipeline with segments and a .jsonl export: memory at the end is
    within 5 % of what it was after frame 500, and the open files are the same ones."""
    import numpy as np

    from app.config import PipelineConfig
    from app.pipeline.pipeline import Pipeline
    from tests.app.fakes import FakeDetector

    clip = tmp_path / "long.mp4"
    with av.open(str(clip), "w") as c:  # 10 000 frames, 25 fps: 400 s of a moving gradient
        stream = c.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        ramp = np.tile(np.arange(96, dtype=np.uint8)[None, :, None], (64, 1, 3))
        for i in range(10_000):
            frame = av.VideoFrame.from_ndarray(np.roll(ramp, i, axis=1), format="rgb24")
            frame.pts = i
            c.mux(stream.encode(frame))
        c.mux(stream.encode())
    marks: dict[int, tuple[int, list[str]]] = {}

    def measure(result, _annotated) -> None:
        if result.frame.index in (500, 9_999):
            marks[result.frame.index] = (rss_kb(), open_files())

    config = PipelineConfig(source_kind="video", source=str(clip), record=str(tmp_path / "soak.mp4"), segment_s=20,
                            export=str(tmp_path / "soak.jsonl"), draw_stats=False)
    pipeline = Pipeline(config, FakeDetector(), on_result=measure)
    pipeline.run()
    assert pipeline.stats().frames_written == 10_000
    (rss_500, fds_500), (rss_end, fds_end) = marks[500], marks[9_999]
    assert abs(rss_end - rss_500) <= 0.05 * rss_500, f"resident memory {rss_500} kB after frame 500, {rss_end} kB at the end"
    assert len(fds_end) <= len(fds_500), f"open file handles grew: {sorted(set(fds_end) - set(fds_500))}"
    assert [f for f in fds_end if "soak-0" in f] == [str(tmp_path / "soak-00020.mp4")]  # the others are closed
    assert len(sorted(tmp_path.glob("soak-0*.mp4"))) == 20
    assert len(jsonl_frames(tmp_path / "soak.jsonl")) == 10_000


@pytest.mark.parametrize(("args", "says"), [
    (["--segment", "0", "--record", "o.mp4"], "segment length 0.0 must be a number of seconds in (0, 86400]"),
    (["--segment", "abc", "--record", "o.mp4"], "argument --segment: invalid float value: 'abc'"),
    (["--segment", "5"], "--segment needs --record"),
    (["--export", "o.txt"], "use .json, .jsonl, .csv"),
])
def test_bad_segment_and_export_options_are_one_line(tmp_path, capsys, monkeypatch, args, says):
    from app.cli.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["--video", str(SAMPLE), "--headless", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and says in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written
