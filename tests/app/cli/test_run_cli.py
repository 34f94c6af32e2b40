"""The run command: help, option mapping, the progress bar, and whole runs through run.py."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from app.cli.progress import Progress, line
from app.cli.run import build_configs, build_parser
from app.io.export import read_rows
from app.stats import MultiStats, PipelineStats
from tests.conftest import ROOT, decode_pts

OPTIONS = ("--video", "--camera", "--images", "--url", "--record", "--export", "--model", "--weights", "--device",
           "--precision", "--proposals", "--score-threshold", "--nms-threshold", "--contained", "--classes", "--max-frames", "--headless", "--overwrite")


def no_display_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}


def test_help_describes_every_option_and_the_other_jobs():
    proc = subprocess.run([sys.executable, "run.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for option in OPTIONS:
        assert option in proc.stdout
    for job in ("bench", "train", "eval", "autolabel"):
        assert f"  {job} " in proc.stdout
    assert "every frame" in proc.stdout and "latest frame" in proc.stdout
    for status in (0, 1, 2, 3, 4, 130):  # every exit status main() returns is explained
        assert re.search(rf"\b{status} (done|bad|internal|interrupted)", proc.stdout), status
    # every option has its own help text
    for action in build_parser()._actions:
        assert action.help, action.option_strings


def test_options_map_to_the_configs():
    args = build_parser().parse_args(["--camera", "2", "--record", "o.mkv", "--classes", " person, car ,", "--proposals",
                                      "50", "--score-threshold", "0.25", "--device", "cpu", "--precision", "bf16",
                                      "--max-frames", "7", "--headless", "--overwrite", "--export", "d.csv",
                                      "--contained", "0.8", "--nms-threshold", "0.45"])
    pipeline, detector = build_configs(args)
    assert (pipeline.source_kind, pipeline.source, pipeline.record, pipeline.export) == ("camera", "2", "o.mkv", "d.csv")
    assert pipeline.max_frames == 7 and pipeline.headless and pipeline.overwrite
    assert pipeline.effective_policy == "drop_stale"
    assert detector.classes == ("person", "car") and detector.proposals == 50
    assert detector.score_threshold == 0.25 and detector.device == "cpu" and detector.precision == "bf16"
    assert detector.contained_threshold == 0.8 and detector.nms_threshold == 0.45
    default = build_configs(build_parser().parse_args(["--camera", "0"]))[1]
    assert default.contained_threshold is None and default.nms_threshold is None  # off; the model's own NMS


class Stream:
    """A stream that keeps what is written; a terminal when ``tty``."""

    def __init__(self, tty: bool = False):
        self.text, self.tty = "", tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return self.tty


def test_progress_line_has_frames_fps_and_eta():
    stats = PipelineStats(frames_written=50, total_frames=150, fps=10.0)
    text = line(MultiStats(streams={"clip": stats}))
    assert text.startswith("[######              ] 50/150 frames") and "10.0 fps" in text and "ETA 0:10" in text
    assert "ETA" not in line(MultiStats(streams={"clip": PipelineStats(frames_written=5, fps=4.0)}))  # total unknown
    first = PipelineStats(frames_written=1, total_frames=150, mean_fps=0.2)  # one frame, after the warm-up
    assert "ETA" not in line(MultiStats(streams={"clip": first})) and "0.2 fps" in line(MultiStats(streams={"clip": first}))
    stream = Stream()
    progress = Progress(stream, every_s=60)
    progress.update(MultiStats(streams={"clip": stats}))
    progress.update(MultiStats(streams={"clip": stats}))  # not a terminal: at most one line per minute here
    assert stream.text == text + "\n"


def test_progress_of_several_streams_names_each_and_the_total():
    streams = {"a": PipelineStats(frames_written=5, total_frames=10, fps=2.5), "b": PipelineStats(frames_written=3)}
    stats = MultiStats(streams=streams, states={"b": "reconnecting (attempt 1, next in 2 s)"}, fps=2.5,
                       batches=4, batch_sizes={1: 2, 2: 2})
    assert line(stats) == "a 5/10 2.5 fps | b 3 -- fps reconnecting (attempt 1, next in 2 s) | all 2.5 fps, batch 1.5"
    terminal = Stream(tty=True)
    progress = Progress(terminal)
    progress.update(stats)
    progress.message("b: lost (reading failed)")
    progress.update(stats, final=True)
    progress.close()
    rows = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.text).replace("\r", "\n").splitlines()
    for name, text in (("a", "5/10 frames  50% |   2.5 fps | ETA 0:02"), ("b", "3 frames |   --- fps | reconnecting (attempt 1"),
                       ("all", "2.5 fps, batch 1.5")):  # one rich line per stream, and the total
        assert any(r.split(" ", 1)[0] == name and text in r for r in rows), (name, rows)
    assert "b: lost (reading failed)" in rows, rows


def test_whole_run_records_and_exports(tmp_path, clip10, tiny_weights):
    out, dets = tmp_path / "out.mp4", tmp_path / "dets.json"
    proc = subprocess.run(
        [sys.executable, "run.py", "--video", str(clip10), "--record", str(out), "--export", str(dets),
         "--weights", str(tiny_weights), "--score-threshold", "0", "--proposals", "50"],  # no --headless, no display
        cwd=ROOT, env=no_display_env(), capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no display" in proc.stderr and "running headless" in proc.stderr
    assert "frames: 10 read, 10 processed, 10 written, 0 dropped" in proc.stderr and "all " not in proc.stderr
    assert "fps" in proc.stderr and "backbone" in proc.stderr
    assert f"recording: {out.resolve()} (10 frames)" in proc.stdout.splitlines() and str(dets) in proc.stdout
    assert decode_pts(out) == decode_pts(clip10)
    rows = read_rows(dets)
    assert rows and {r["frame"] for r in rows} == set(range(10))


@pytest.mark.parametrize("max_frames", [3])
def test_max_frames_and_overwrite(capsys, tmp_path, clip10, tiny_weights, max_frames):
    from app.cli.cli import main

    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")
    rc = main(["--video", str(clip10), "--record", str(out), "--overwrite", "--max-frames", str(max_frames),
               "--weights", str(tiny_weights), "--headless"])
    assert rc == 0, capsys.readouterr().err
    assert len(decode_pts(out)[0]) == max_frames


def test_image_folder_run(capsys, tmp_path, frame_rgb, tiny_weights):
    import cv2

    from app.cli.cli import main

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.jpg"), frame_rgb[i * 10:i * 10 + 101, :161, ::-1])  # odd size
    out = tmp_path / "imgs.mp4"
    rc = main(["--images", str(tmp_path), "--record", str(out), "--weights", str(tiny_weights), "--headless"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "padded" in captured.out
    pts, tb = decode_pts(out)
    assert len(pts) == 3 and pts[1] * tb == pytest.approx(0.1)  # image folders are timed at 10 fps


def test_an_image_folder_export_names_each_image(capsys, tmp_path, frame_rgb, tiny_weights):
    """Frame numbers of a folder follow the sorted names; the export's last column says which file."""
    import cv2

    from app.cli.cli import main
    from app.io.export import read_rows

    folder = tmp_path / "photos"
    folder.mkdir()
    names = ["b_street.png", "a_desk.jpg", "c_dog.jpg"]
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), frame_rgb[i * 20:i * 20 + 200, i * 30:i * 30 + 260, ::-1])
    out = tmp_path / "dets.csv"
    rc = main(["--images", str(folder), "--export", str(out), "--weights", str(tiny_weights), "--headless",
               "--score-threshold", "0"])
    assert rc == 0, capsys.readouterr().err
    rows = read_rows(out)
    assert rows and list(rows[0])[-1] == "file"
    by_frame = {r["frame"]: r["file"] for r in rows}
    assert by_frame == {i: str(folder / n) for i, n in enumerate(sorted(names)) if i in by_frame}


def test_with_a_display_the_gui_gets_both_configs(monkeypatch, tmp_path, clip10):
    import types

    from app.cli.cli import main

    calls = []
    fake = types.ModuleType("app.gui.launch")
    fake.run_gui = lambda pipeline_config, detector_config, **options: calls.append((pipeline_config, detector_config)) or 0
    monkeypatch.setitem(sys.modules, "app.gui.launch", fake)
    monkeypatch.setenv("DISPLAY", ":99")
    assert main(["--video", str(clip10), "--record", str(tmp_path / "o.mp4"), "--proposals", "100"]) == 0
    (pipeline_config, detector_config), = calls
    assert pipeline_config.source == str(clip10) and not pipeline_config.headless
    assert pipeline_config.record == str(tmp_path / "o.mp4") and detector_config.proposals == 100
    assert not (tmp_path / "o.mp4").exists()  # the GUI, not the CLI, writes it


def test_url_run_is_paced_and_keeps_the_newest_frames(capsys, tmp_path, tiny_weights):
    """--url on a real HTTP stream: latest-frame policy, paced at the stream's own rate."""
    import functools
    import http.server
    import threading
    import time
    from fractions import Fraction

    from app.cli.cli import main
    from tests.app.io.test_sources import write_clip

    served = tmp_path / "srv"
    served.mkdir()
    clip = write_clip(served / "live.ts", "libx264", "yuv420p", size=(320, 240), pts=[i * 3600 for i in range(40)],
                      time_base=Fraction(1, 90000))  # 40 frames at 25 fps = 1.6 s
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "live.mp4"
    try:
        t = time.monotonic()
        rc = main(["--url", f"http://127.0.0.1:{server.server_address[1]}/live.ts", "--record", str(out),
                   "--weights", str(tiny_weights), "--headless"])
        took = time.monotonic() - t
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert rc == 0, err
    assert took > 1.5  # paced at 25 fps, not read as fast as the disk allows
    counts = err.split("frames: ", 1)[1].split("\n", 1)[0]  # "40 read, N processed, N written, D dropped, 0 bad"
    read, processed, written, dropped = (int(counts.split(", ")[i].split()[0]) for i in range(4))
    assert read == 40 and processed == written == read - dropped
    src_pts, src_tb = decode_pts(clip)
    rec_pts, rec_tb = decode_pts(out)
    assert len(rec_pts) == written
    # Every recorded frame keeps its own instant of the stream: dropped frames leave gaps in time,
    # they do not speed the video up.
    source_times = {(p - src_pts[0]) * src_tb for p in src_pts}
    assert {(p - rec_pts[0]) * rec_tb for p in rec_pts} <= source_times


class SignalledPipeline:
    """A stand-in pipeline: SIGTERM arrives while it runs, and once more while it finalises its outputs."""

    lanes, events, export_sink = [], None, None

    def __init__(self):
        self.stops, self.finalised = 0, False

    def start(self):
        pass

    def wait(self, timeout):
        os.kill(os.getpid(), signal.SIGTERM)
        return False

    def stop(self):
        self.stops += 1
        if self.stops == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # an impatient second `kill`
            self.finalised = True

    def output_failures(self):
        return []

    def run_stats(self):
        return MultiStats(streams={"clip": PipelineStats(frames_written=3)})

    def analytics_lines(self):
        return []


def test_a_second_sigterm_does_not_cut_the_finalising_short(capsys):
    from app.cli.console import run_to_end, sigterm_as_interrupt

    setup = type("Setup", (), {"take_announcement": lambda self: None, "summary_lines": lambda self: []})()
    pipeline, previous = SignalledPipeline(), sigterm_as_interrupt()
    try:
        stats, interrupted, failures = run_to_end(pipeline, Progress(Stream()), setup)
    except KeyboardInterrupt:
        pytest.fail("the second SIGTERM interrupted the finalising")
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert interrupted and pipeline.finalised and failures == []
    assert "interrupted: threads stopped, outputs finalised" in capsys.readouterr().err


@pytest.mark.parametrize("n", [1, 2])
def test_what_a_source_learns_while_running_is_said_for_every_stream(capsys, tmp_path, frame_rgb, tiny_weights, n):
    """An unreadable image is skipped with a note naming it — by one stream of several too, led by its name."""
    import cv2

    from app.cli.cli import main

    folders = [tmp_path / name for name in ("left", "right")[:n]]
    for folder in folders:
        folder.mkdir()
        for i in range(2):
            cv2.imwrite(str(folder / f"{i:03d}.jpg"), frame_rgb[:120, :160, ::-1])
        (folder / "001x.jpg").write_text("not an image")
    rc = main([a for f in folders for a in ("--images", str(f))] + ["--weights", str(tiny_weights), "--headless"])
    err = capsys.readouterr().err
    assert rc == 1, err  # done, but a frame could not be decoded
    for folder in folders:
        lead = f"{folder.name}: " if n > 1 else ""
        assert f"note: {lead}{folder / '001x.jpg'} could not be read as an image; skipped" in err.splitlines(), err


def test_a_stream_named_all_keeps_its_bar_beside_the_total():
    streams = {"all": PipelineStats(frames_written=5, total_frames=10, fps=2.5), "b": PipelineStats()}
    terminal = Stream(tty=True)
    progress = Progress(terminal)
    progress.update(MultiStats(streams=streams, fps=2.5, batches=4, batch_sizes={1: 2, 2: 2}), final=True)
    rows = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.text).replace("\r", "\n").splitlines()
    assert any(r.startswith("all ") and "5/10 frames" in r for r in rows), rows  # the stream (all.mp4)
    assert any(r.startswith("all ") and "2.5 fps, batch 1.5" in r for r in rows), rows  # the total


def test_a_sources_file_saved_with_a_byte_order_mark_reads_as_without(tmp_path, clip10):
    """Notepad's UTF-8 starts the file with U+FEFF: the first line is still 'KIND VALUE'."""
    from app.cli.multi_run import read_sources_file

    listing = tmp_path / "cams.txt"
    listing.write_text(f"video {clip10}\n# a comment\nurl rtsp://cam2/s\n", encoding="utf-8-sig")
    assert read_sources_file(str(listing)) == [("video", str(clip10)), ("url", "rtsp://cam2/s")]


def test_stdout_closed_by_its_reader_is_status_141_and_no_internal_error(tmp_path):
    """run.py bench ... | head: the reader leaves; that was 'internal error: BrokenPipeError', status 3."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "bench", "--video", str(ROOT / "assets" / "sample.mp4"),
                             "--frames", "1", "--warmup", "0", "--proposals", "50", "--no-pipeline", "--no-baseline",
                             "--out", str(tmp_path / "b")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the child writes its table
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141 and "error" not in err, err
    assert (tmp_path / "b" / "results.csv").is_file()  # the files were written before the table was printed
