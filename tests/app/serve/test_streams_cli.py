"""The sources file, the serve settings, the status table and the serve command's one-line errors
(without a cluster: every case here fails before Ray would start)."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import pytest

from app.errors import UserError
from app.serve.config import ServeConfig, check_reachable, parse_address
from app.serve.ingest import StreamStatus
from app.serve.status import RateTracker, status_table
from app.serve.streams import collect_streams, parse_stream
from app.stats import PipelineStats
from tests.conftest import SAMPLE


def test_sources_file_lines(tmp_path):
    f = tmp_path / "streams.txt"
    f.write_text(
        "# cameras and files\n"
        "\n"
        "--name lobby --camera 0 --record lobby.mp4\n"
        f"--video {SAMPLE} --export a.json --max-frames 20   # a comment\n"
        f"--video {SAMPLE} --live --on gpu-node\n"
        "--url rtsp://cam.local/door?x=1\n"
    )
    lobby, clip, replay, door = collect_streams(str(f), (), in_flight=3)
    live = {s.name: s.config.effective_policy == "drop_stale" for s in (lobby, clip, replay, door)}
    assert live == {"lobby": True, "sample": False, "sample-2": True, "cam.local-door": True}
    assert (lobby.name, lobby.config.batch_size) == ("lobby", 1)
    assert lobby.config.record == str(Path.cwd() / "lobby.mp4")  # absolute: the actor may run elsewhere
    assert (clip.name, clip.config.batch_size, clip.config.max_frames) == ("sample", 3, 20)
    assert replay.name == "sample-2" and replay.config.effective_realtime and replay.on == "gpu-node"
    assert door.name == "cam.local-door" and door.config.source == "rtsp://cam.local/door?x=1"
    assert clip.config.source == str(SAMPLE) and lobby.config.source == "0"


@pytest.mark.parametrize("line, message", [
    ("--video a.mp4 --proposals 100", "--proposals is a setting of the shared deployment"),
    ("--camera 0 --live", "--live is for files"),
    ("--record x.mp4", "one of the arguments --video --camera --images --url is required"),
    ("--video a.mp4 --export a.txt", "not a detections file"),
    ("--video 'a.mp4", "No closing quotation"),
    ("--video a.mp4 --on 'bad name'", "must be a Ray resource name"),
    ("--video a.mp4 --bogus 1", "unrecognized arguments: --bogus"),
])
def test_bad_lines_name_the_line(tmp_path, line, message):
    f = tmp_path / "s.txt"
    f.write_text(f"--video ok.mp4\n{line}\n")
    with pytest.raises(UserError, match=message) as info:
        collect_streams(str(f), ())
    assert str(info.value).startswith(f"{f}:2: ") and "\n" not in str(info.value)


def test_names_and_outputs_must_not_clash():
    for second in ("--name a --video y.mp4", "--name=a --video y.mp4", "--na a --video y.mp4"):
        with pytest.raises(UserError, match="a stream named 'a' is already listed"):
            collect_streams(None, ["--name a --video x.mp4", second])
    with pytest.raises(UserError, match="streams 'x' and 'y' both write /.*/out.csv; give each its own file"):
        collect_streams(None, ["--video x.mp4 --export out.csv", "--video y.mp4 --export out.csv"])
    # --overwrite replaced a stream's own video while it was being read
    with pytest.raises(UserError, match=r"stream 'b' would write /.*/a.mp4, the video of stream 'a'"):
        collect_streams(None, ["--video a.mp4", "--name b --video b.mp4 --record a.mp4"], overwrite=True)
    with pytest.raises(UserError, match=r"--record /.*/a.mp4 is the source --video /.*/a.mp4"):  # its own
        collect_streams(None, ["--video a.mp4 --record a.mp4"], overwrite=True)
    with pytest.raises(UserError, match="no streams"):
        collect_streams(None, [])
    with pytest.raises(UserError, match="sources file nope.txt does not exist"):
        collect_streams("nope.txt", [])


def test_overwrite_and_in_flight_reach_every_stream():
    (spec,) = collect_streams(None, ["--video x.mp4 --export o.json"], overwrite=True, in_flight=6)
    assert spec.config.overwrite and spec.config.batch_size == 6 and spec.config.effective_policy == "every_frame"
    assert parse_stream("--camera /dev/video2").name == "camera2"


def test_a_stream_may_cut_its_recording_into_segments():
    spec = parse_stream("--video x.mp4 --record lobby.mp4 --segment 60")
    assert spec.config.segment_s == 60.0 and spec.config.record.endswith("lobby.mp4")
    with pytest.raises(UserError, match="--segment needs --record"):
        parse_stream("--video x.mp4 --segment 60")
    with pytest.raises(UserError, match="segment length 0.0"):
        parse_stream("--video x.mp4 --record r.mp4 --segment 0")


def test_serve_config_checks():
    with pytest.raises(UserError, match="--replicas 0"):
        ServeConfig(replicas=0)
    with pytest.raises(UserError, match="--transport 'gzip'"):
        ServeConfig(transport="gzip")
    with pytest.raises(UserError, match="--batch-wait-s -1"):
        ServeConfig(batch_wait_timeout_s=-1)
    assert parse_address("head.local") == ("head.local", 6379)
    assert parse_address("ray://head:10001") == ("head", 10001) and parse_address("auto") is None
    with pytest.raises(UserError, match="is not HOST:PORT"):
        ServeConfig(address="head:port")
    # a joined cluster has its own CPUs, object store and dashboard: these were ignored in silence
    for local_only, flag in (({"num_cpus": 4}, "--num-cpus"), ({"object_store_mb": 512}, "--object-store-mb"),
                             ({"dashboard": True}, "--dashboard")):
        with pytest.raises(UserError, match=f"^{flag} is for the local cluster"):
            ServeConfig(address="head:6379", **local_only)
    assert parse_address("[::1]:7000") == ("::1", 7000) and parse_address("ray://[fe80::1]") == ("fe80::1", 10001)
    for bad in ("[::1", "[::1]80", "[::1]:", "head:"):  # an unclosed bracket, or a port without its ':'
        with pytest.raises(UserError, match="is not HOST:PORT"):
            parse_address(bad)


def test_unreachable_address_is_one_line():
    import socket

    with socket.socket() as s:  # a port on this machine that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=rf"cannot join the Ray cluster at 127.0.0.1:{port}: connection refused"):
        check_reachable(f"127.0.0.1:{port}", timeout_s=2)


def status(name, state, written, total=None, **stats):
    return StreamStatus(name, state, node="n1", stats=PipelineStats(frames_written=written, total_frames=total, **stats))


def test_status_table_one_line_per_stream():
    rates = RateTracker(window_s=10)
    streams = [status("a", "running", 10, 100, latency_ms=210.0), status("cam", "running", 50, frames_dropped=7)]
    rates.update(streams, now=0.0)
    streams = [status("a", "running", 30, 100, latency_ms=230.0), status("cam", "failed", 55, frames_dropped=9)]
    streams[1] = StreamStatus("cam", "failed", node="n1", stats=streams[1].stats, error="camera 0 delivered no frame for 10 s")
    replicas = [{"replica": "abcdefgh12", "fps": 9.5, "batch": 1.9, "busy": 0.97, "proposals": 300, "score_threshold": 0.5}]
    lines = status_table(streams, replicas, rates.update(streams, now=4.0))
    assert lines[0].split() == ["stream", "state", "frames", "fps", "latency", "dropped", "retries", "batch", "node"]
    assert lines[1].split()[:5] == ["a", "running", "30/100", "5.0", "230"]
    assert lines[2].split()[:4] == ["cam", "failed", "55", "--"] and " 9 " in lines[2]
    assert lines[3].startswith("total: 5.0 fps over 1 running stream(s); replicas: 1 (proposals 300, threshold 0.5)")
    assert "abcdefgh: 9.5 fps, batch 1.9, busy 97%" in lines[3]
    assert lines[4] == "cam: camera 0 delivered no frame for 10 s"


def run_serve(capsys, *args) -> tuple[int, str]:
    """``run.py serve ARGS`` in this process (as app.cli.cli runs it): (exit status, stderr)."""
    from app.cli.cli import main

    status = main(["serve", *args])
    return status, capsys.readouterr().err


def test_serve_without_ray_says_how_to_install(capsys, monkeypatch):
    """With Ray not importable the command says how to install it, in one line."""
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray looks like to import
    status, err = run_serve(capsys, "--stream", f"--video {SAMPLE}")
    assert status == 2 and err.strip().splitlines() == [
        "error: run.py serve needs Ray Serve, which is not installed: pip install -e '.[serve]' (or pip install 'ray[serve]')"]


def test_serve_bad_input_is_one_line_before_any_cluster(capsys, monkeypatch):
    monkeypatch.setattr("app.serve.ray_available", lambda: True)  # these checks come first, Ray or not
    status, err = run_serve(capsys, "--stream", "--video missing.mp4")
    assert status == 2 and err.strip().splitlines() == [
        f"error: stream 'missing': video file {Path.cwd() / 'missing.mp4'} does not exist"], err
    status, err = run_serve(capsys, "--stream", f"--video {SAMPLE}", "--replicas", "0")
    assert status == 2 and err.strip() == "error: --replicas 0 must be an integer between 1 and 256"
    status, err = run_serve(capsys, "--stream", f"--video {SAMPLE}", "--proposals", "0")
    assert status == 2 and err.strip() == "error: --proposals 0 must be an integer ≥ 1"
    status, err = run_serve(capsys, "--stream", f"--video {SAMPLE}", "--reprobe")  # was accepted and ignored
    assert status == 2 and err.startswith("error: --reprobe is not") and err.count("\n") == 1, err


def test_serve_unreachable_address_is_one_line_exit_2(capsys):
    pytest.importorskip("ray.serve", reason="the address is checked when joining, which needs Ray")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    status, err = run_serve(capsys, "--stream", f"--video {SAMPLE}", "--address", f"127.0.0.1:{port}")
    assert status == 2, err
    assert err.strip().splitlines() == [
        f"error: cannot join the Ray cluster at 127.0.0.1:{port}: connection refused "
        f"(start one with `ray start --head --port {port}`)"]
    assert time.monotonic() - started < 60  # not Ray's own minute of connect retries


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_table_is_redrawn_in_place_on_a_terminal_and_printed_every_10_s_elsewhere():
    from app.serve import TablePrinter

    tty = FakeTerminal()
    printer = TablePrinter(tty, every_s=1.0)
    printer.show(["a", "b"])
    printer.show(["c", "d"])
    assert tty.getvalue() == "a\nb\n\x1b[2F\x1b[Jc\nd\n"  # up two lines, clear, redraw
    log = io.StringIO()
    printer = TablePrinter(log, every_s=1.0)
    printer.show(["x"])  # within 10 s of the start: nothing
    printer.show(["y"], final=True)
    assert log.getvalue() == "y\n"


def test_knob_commands_typed_on_a_terminal(monkeypatch):
    from app.serve import _start_knob_reader
    from app.serve.batching import Knobs

    class Session:
        knobs = Knobs(300, 0.5)

        def set_knobs(self, proposals=None, score_threshold=None):
            self.knobs = Knobs(proposals or self.knobs.proposals,
                               self.knobs.score_threshold if score_threshold is None else score_threshold)
            return self.knobs

    stdin = FakeTerminal("proposals 100\nthreshold 0.7\nthreshold 7\nbogus\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    out, session = io.StringIO(), Session()
    _start_knob_reader(session, out).join(10)
    assert (session.knobs.proposals, session.knobs.score_threshold) == (100, 0.7)
    assert out.getvalue().splitlines() == [
        "deployment: proposals 100, score threshold 0.5",
        "deployment: proposals 100, score threshold 0.7",
        "error: score threshold 7.0 must be a number between 0 and 1",
        "commands: proposals N | threshold X   (Ctrl-C stops every stream)",
    ]


def test_a_knob_command_the_cluster_fails_is_said_and_the_reader_goes_on(monkeypatch):
    """A Ray timeout (or a dead board actor) raised out of the reader thread: a traceback on the
    status screen and no more commands read."""
    from app.serve import _start_knob_reader

    class Session:
        def set_knobs(self, proposals=None, score_threshold=None):
            raise TimeoutError("Get timed out: some object(s) not ready.")

    monkeypatch.setattr(sys, "stdin", FakeTerminal("proposals 100\nbogus\n"))
    out = io.StringIO()
    _start_knob_reader(Session(), out).join(10)
    assert out.getvalue().splitlines() == [
        "error: the knobs could not be set: TimeoutError: Get timed out: some object(s) not ready.",
        "commands: proposals N | threshold X   (Ctrl-C stops every stream)",
    ]


def test_a_replica_that_cannot_start_is_reported_by_its_own_error():
    from app.serve.cluster import _cause_line

    traceback = (
        "RuntimeError: Traceback (most recent call last):\n"
        '  File "/x/replica.py", line 1867, in initialize\n'
        "    await self._user_callable_wrapper.initialize_callable()\n"
        '  File "/x/detector/weights.py", line 40, in read_weights_file\n'
        '    raise WeightsError(f"weights file {path} is not a PyTorch weights file") from None\n'
        "detector.weights.WeightsError: weights file /data/w.pt is not a PyTorch weights file (174812789)\n")
    assert _cause_line(traceback) == "weights file /data/w.pt is not a PyTorch weights file (174812789)"
    assert _cause_line("Failed to update the deployments ['detector'].") == "Failed to update the deployments ['detector']."


def test_serve_refuses_a_bad_weights_file_or_device_before_any_cluster(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("app.serve.ray_available", lambda: True)
    bad = tmp_path / "w.pt"
    bad.write_text("not weights")
    status, err = run_serve(capsys, "--stream", f"--video {SAMPLE}", "--weights", str(bad))
    assert status == 2 and err.startswith(f"error: weights file {bad} ") and err.count("\n") == 1
    import torch

    if not torch.cuda.is_available():
        status, err = run_serve(capsys, "--stream", f"--video {SAMPLE}", "--device", "cuda")
        assert status == 2 and err.strip() == "error: device 'cuda' was asked for, but this machine has no CUDA GPU; use --device cpu"


def test_a_stream_process_does_not_load_torch():
    """A stream's actor imports only what carries frames and results: no torch (seconds to import and
    ~300 MB per stream process)."""
    import subprocess

    code = ("import sys, app.serve.cluster, app.serve.ingest, app.serve.status, app.pipeline.sinks; "
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[3], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_hash_inside_a_word_is_no_comment():
    """As a shell reads the line (and run.py's own --sources file): ``#`` starts a comment only at the
    start of a word, outside quotes; ``take#2.mp4`` was cut to ``take``."""
    spec = parse_stream("--video take#2.mp4 --export 'out #1.csv' --name a\\ #b  # --live")
    assert spec.config.source.endswith("/take#2.mp4") and spec.config.export.endswith("/out #1.csv")
    assert spec.name == "a #b" and spec.config.effective_policy == "every_frame"
    assert parse_stream("--url rtsp://cam/s#1 #--live").config.source == "rtsp://cam/s#1"
    assert parse_stream('--url "rtsp://cam/s" --name "#x"').name == "#x"


@pytest.mark.parametrize("line, message", [
    ("--video ''", "no video given"),  # was made absolute: the current folder, read as the video
    ("--images ''", "no images given"),
    ("--video a.mp4 --record ''", "recording output  has extension"),  # not the current folder's name
    ("--video a.mp4 --name ''", "--name is empty"),
    ("--video a.mp4 --name '  '", "--name is empty"),
])
def test_empty_values_are_refused(line, message):
    with pytest.raises(UserError, match=message):
        parse_stream(line)
