"""Many streams, one detector: one batch per step with the same detections as single runs, every
frame of every file, per-stream recordings, the export's ``stream`` column, a stream that cannot be
reached or is slow does not hold up the others, and bad input is one line."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from app.cli.multi_run import read_sources_file, source_key
from app.config import PipelineConfig
from app.io.export import read_rows
from app.io.paths import per_stream_path, unique_names
from app.io.reconnect import open_source
from app.pipeline.pipeline import Pipeline, Stream
from tests.app.fakes import FakeDetector
from tests.conftest import cut_clip, decode_pts
from tests.matching import assert_same_detections


def cut_from(path: Path, start: int, n: int) -> Path:
    """Frames [start, start + n) of the sample clip as their own H.264 file (timestamps from 0, crf 12)."""
    return cut_clip(path, n, start=start, options={"preset": "ultrafast", "crf": "12"})


def streams_of(paths, **config) -> list[Stream]:
    out = []
    for name, path in paths.items():
        cfg = PipelineConfig(source_kind="video", source=str(path), **config)
        out.append(Stream(name, cfg, open_source(cfg)))
    return out


@pytest.fixture(scope="module")
def default_detector():
    """The bundled model: real weights, so that detections are stable enough to compare exactly."""
    from detector import Detector, DetectorConfig

    return Detector(DetectorConfig(device="cpu", proposals=100))


def test_two_streams_in_one_batch_detect_what_two_single_runs_detect(tmp_path, default_detector):
    a = cut_clip(tmp_path / "a.mp4", 4)
    b = cut_from(tmp_path / "b.mp4", 60, 4)  # other people, other places
    got: dict[str, list] = {"a": [], "b": []}
    pipeline = Pipeline.of_streams(streams_of({"a": a, "b": b}), default_detector,
                                   on_result=lambda name, result, _img: got[name].append(result))
    pipeline.run()
    stats = pipeline.run_stats()
    assert [len(got["a"]), len(got["b"])] == [4, 4]
    assert stats.batch_sizes.get(2, 0) >= 3  # the frames really went through together
    assert sum(r.batch_size == 2 for r in got["a"] + got["b"]) >= 6
    compared = 0
    for name in ("a", "b"):
        for result in got[name]:
            single, = default_detector.detect([result.frame.image])
            batched = result.detections
            # a batch pads frames to one size: the same boxes to ~1e-3 px, rows may swap
            m = assert_same_detections(batched, single, iou=0.99, score_atol=1e-4, floor=0.3, what=f"{name} frame {result.frame.index}")
            compared += len(m.pairs)
    assert compared > 10  # people were found, so the comparison compared something


def test_two_files_every_frame_recorded_and_exported_per_stream(tmp_path, clip10, tiny_weights, capsys):
    from app.cli.cli import main

    other = cut_from(tmp_path / "street.mp4", 40, 7)
    out, dets = tmp_path / "out.mp4", tmp_path / "dets.csv"
    rc = main(["--video", str(clip10), "--video", str(other), "--record", str(out), "--export", str(dets),
               "--weights", str(tiny_weights), "--score-threshold", "0", "--proposals", "20", "--headless"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rec_a, rec_b = tmp_path / "out-clip10.mp4", tmp_path / "out-street.mp4"
    assert f"clip10: recording: {rec_a.resolve()} (10 frames)" in captured.out.splitlines()
    assert f"street: recording: {rec_b.resolve()} (7 frames)" in captured.out.splitlines()
    assert decode_pts(rec_a) == decode_pts(clip10)  # frames in = frames out, each at its own time
    assert decode_pts(rec_b) == decode_pts(other)
    assert "clip10: 10 read, 10 processed, 10 written, 0 dropped" in captured.err
    assert "street: 7 read, 7 processed, 7 written, 0 dropped" in captured.err
    assert "all 2 streams: 17 frames, " in captured.err and "batches, mean size" in captured.err
    rows = read_rows(dets)
    assert list(rows[0])[0] == "stream"
    assert {r["frame"] for r in rows if r["stream"] == "clip10"} == set(range(10))
    assert {r["frame"] for r in rows if r["stream"] == "street"} == set(range(7))
    assert not out.exists()  # one file per stream, none under the plain name


def test_an_unreachable_second_url_does_not_stop_the_first_stream(tmp_path, clip10, tiny_weights, capsys):
    from app.cli.cli import main

    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out.mp4"
    t = time.monotonic()
    rc = main(["--video", str(clip10), "--url", f"http://127.0.0.1:{port}/cam.ts", "--reconnect", "1",
               "--record", str(out), "--weights", str(tiny_weights), "--headless"])
    took = time.monotonic() - t
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 2 and took < 30
    assert decode_pts(tmp_path / "out-clip10.mp4") == decode_pts(clip10)  # the file went through, all of it
    assert f"127.0.0.1-{port}-cam" in captured.err and "Connection refused" in captured.err
    assert "gave up after 1 reconnection attempt" in lines[-1] and lines[-1].startswith("error: stream")
    assert f"127.0.0.1-{port}-cam: recording: none written (no frame arrived)" in captured.out.splitlines()


@pytest.mark.parametrize("args, message", [
    (["--video", "{clip}", "--video", "{clip}"], "the same source is given twice: --video {clip} (streams 1 and 2)"),
    (["--camera", "0", "--camera", "/dev/video0"], "the same source is given twice: --camera /dev/video0 (streams 1 and 2)"),
    (["--video", "{clip}"] + [f"--url=udp://127.0.0.1:{5000 + i}" for i in range(16)],
     "17 sources given; at most 16 streams run in one process"),
    (["--video", "{clip}", "--camera", "57"], "camera 57 does not exist"),
])
def test_bad_stream_lists_are_one_line(tmp_path, clip10, capsys, args, message):
    from app.cli.cli import main

    args = [a.format(clip=clip10) for a in args]
    rc = main([*args, "--headless", "--record", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message.format(clip=clip10) in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_an_image_folder_among_several_streams_keeps_its_file_column(tmp_path, clip10, frame_rgb):
    """One images stream names each row's file; beside another stream that column was left out."""
    import cv2

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("b.png", "a.jpg"):
        cv2.imwrite(str(folder / name), frame_rgb[:120, :160, ::-1])
    images = PipelineConfig(source_kind="images", source=str(folder))
    streams = [*streams_of({"clip": clip10}), Stream("photos", images, open_source(images))]
    Pipeline.of_streams(streams, FakeDetector(), export=str(tmp_path / "dets.csv")).run()
    rows = read_rows(tmp_path / "dets.csv")
    assert list(rows[0])[0] == "stream" and list(rows[0])[-1] == "file"
    photos = sorted(r["file"] for r in rows if r["stream"] == "photos")
    assert photos == [str(folder / "a.jpg"), str(folder / "b.png")]
    assert len([r for r in rows if r["stream"] == "clip"]) == 10


def test_a_stream_that_failed_at_once_is_not_said_to_have_run_as_long_as_the_others(tmp_path, clip10):
    """Its elapsed time stops when it ended; with no result it ran on to the moment the stats were taken."""
    from app.io.sources import FileSource, SourceError

    class Broken(FileSource):
        def frames(self):
            raise SourceError(f"{self.name}: no picture")
            yield

    long = cut_clip(tmp_path / "long.mp4", 30)
    cfg = PipelineConfig(source_kind="video", source=str(clip10))
    streams = [*streams_of({"long": long}, realtime=True), Stream("broken", cfg, Broken(str(clip10)))]
    pipeline = Pipeline.of_streams(streams, FakeDetector())
    stats = pipeline.run()
    run = pipeline.run_stats()
    assert run.states["broken"].startswith("failed") and run.streams["long"].frames_written == 30
    assert run.streams["broken"].elapsed_s < 0.5 * run.streams["long"].elapsed_s, run.summary()
    assert stats.frames_written == 30


def test_several_streams_write_their_own_heat_maps_beside_an_old_one(tmp_path, clip10):
    """--heatmap h.png with two streams writes h-a.png and h-b.png: an h.png left by an earlier run
    was refused as if it were to be replaced."""
    from app.analytics.events import EventsConfig

    (tmp_path / "h.png").write_bytes(b"old")
    streams = streams_of({"a": clip10, "b": clip10}, track=True)
    Pipeline.of_streams(streams, FakeDetector(), events=EventsConfig(heatmap=str(tmp_path / "h.png"))).run()
    assert (tmp_path / "h-a.png").is_file() and (tmp_path / "h-b.png").is_file()
    assert (tmp_path / "h.png").read_bytes() == b"old"


def test_a_slow_stream_does_not_hold_up_the_others(tmp_path, clip10):
    slow_clip = cut_clip(tmp_path / "slow.mp4", 10)

    class SlowSink:
        needs_image = False

        def write(self, result, annotated):
            time.sleep(0.15)

        def close(self):
            pass

    detector = FakeDetector()
    pipeline = Pipeline.of_streams(streams_of({"fast": clip10, "slow": slow_clip}, queue_size=2), detector)
    done_at = {}
    pipeline.lanes[1].add_sink(SlowSink())
    for lane in pipeline.lanes:
        lane.add_sink(type("Mark", (), {"needs_image": False, "close": lambda self: None,
                                        "write": lambda self, r, a, n=lane.name: done_at.__setitem__(n, time.monotonic())})())
    pipeline.run()
    stats = pipeline.run_stats()
    assert stats.streams["fast"].frames_written == stats.streams["slow"].frames_written == 10
    assert done_at["slow"] - done_at["fast"] > 0.6  # the fast stream finished long before the slow one
    assert 1 in stats.batch_sizes  # it went on alone once the slow one's results queue was full


def test_stop_finalises_every_recording_and_the_export(tmp_path):
    clips = {name: cut_clip(tmp_path / f"{name}.mp4", 30) for name in ("a", "b")}
    streams = streams_of(clips, realtime=True)  # paced at 10 fps: still running when stopped
    streams = [Stream(s.name, s.config.with_(record=str(tmp_path / f"rec-{s.name}.mp4")), s.source) for s in streams]
    pipeline = Pipeline.of_streams(streams, FakeDetector(), export=str(tmp_path / "dets.json"))
    pipeline.start()
    time.sleep(1.0)
    t = time.monotonic()
    pipeline.stop()
    assert time.monotonic() - t < 2
    assert not pipeline.wait(0) or pipeline.finished
    import json

    rows = json.loads((tmp_path / "dets.json").read_text())
    assert {r["stream"] for r in rows} == {"a", "b"}
    for name in ("a", "b"):
        pts, _ = decode_pts(tmp_path / f"rec-{name}.mp4")
        written = pipeline.run_stats().streams[name].frames_written
        assert 3 <= len(pts) == written < 30


def test_stream_names_paths_and_the_sources_file(tmp_path, clip10):
    sources = [("video", "a/clip.mp4"), ("video", "b/clip.mp4"), ("camera", "/dev/video2"),
               ("url", "rtsp://10.0.0.5:8554/live/stream1"), ("url", "http://cam.local/feed.ts?token=x"), ("images", "frames/*.jpg")]
    assert unique_names(sources) == ["clip", "clip-2", "camera2", "10.0.0.5-8554-live-stream1", "cam.local-feed", "frames"]
    assert per_stream_path("out/rec.mp4", "camera2") == str(Path("out/rec-camera2.mp4"))
    assert source_key("camera", "0") == source_key("camera", "/dev/video0")
    listing = tmp_path / "sources.txt"
    listing.write_text(f"# two streams\nvideo {clip10}\n\nrtsp://cam/1\n0\n{tmp_path}\n")
    assert read_sources_file(str(listing)) == [("video", str(clip10)), ("url", "rtsp://cam/1"), ("camera", "0"),
                                               ("images", str(tmp_path))]
    bad = tmp_path / "bad.txt"
    bad.write_text("webcam one\n")
    with pytest.raises(Exception, match="line 1: 'webcam one'"):
        read_sources_file(str(bad))


def test_ctrl_c_finalises_every_recording_and_the_export(tmp_path, tiny_weights):
    """SIGINT to a headless run of two files: status 130, both recordings play, the export is whole."""
    import json
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    clips = [cut_clip(tmp_path / f"{name}.mp4", 120) for name in ("one", "two")]
    out, dets = tmp_path / "out.mp4", tmp_path / "dets.json"
    proc = subprocess.Popen(
        [sys.executable, "run.py", "--video", str(clips[0]), "--video", str(clips[1]), "--record", str(out),
         "--export", str(dets), "--weights", str(tiny_weights), "--headless"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "out-two.mp4").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the recorder creates its file with the first frame: the run is under way
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted: threads stopped, outputs finalised" in stderr
    rows = json.loads(dets.read_text())  # complete JSON, not cut off
    for name in ("one", "two"):
        pts, _ = decode_pts(tmp_path / f"out-{name}.mp4")
        assert 1 <= len(pts) < 120 and pts == sorted(pts)
        assert f"out-{name}.mp4" in stdout
    assert {r["stream"] for r in rows} <= {"one", "two"}
