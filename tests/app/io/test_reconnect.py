"""Reconnection: a live source that errors, ends or stalls is reopened with backoff; its frames keep
one clock (monotonic, the gap kept); real servers on the loopback are killed and restarted."""

from __future__ import annotations

import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from app.bench.live_streams import LiveServer, rtsp_relay_available
from app.config import RECONNECT_FOREVER, PipelineConfig
from app.frames import Frame
from app.io.reconnect import ReconnectingSource, SourceEvent, backoff_delay, open_source
from app.io.sources import Source, SourceError, SourceUnavailable
from app.pipeline.pipeline import Pipeline
from tests.conftest import decode_pts

TB = Fraction(1, 90000)


class FakeLive(Source):
    """A live source: ``n`` frames 40 ms apart (real time), then ``how``: "error", "end" or "stall"."""

    live = True
    rate = Fraction(25)
    time_base = TB

    def __init__(self, n: int, how: str = "error", value: int = 0, stall_s: float = 5.0) -> None:
        super().__init__()
        self.name, self.n, self.how, self.value, self.stall_s = "fake://cam", n, how, value, stall_s
        self.closed_by = None

    def frames(self):
        for i in range(self.n):
            if self._closed.is_set():
                return
            time.sleep(0.04)
            yield Frame(i, i * 3600, TB, np.full((4, 4, 3), self.value, np.uint8), time.monotonic())
        if self.how == "error":
            raise SourceError("connection reset by peer")
        if self.how == "stall":
            time.sleep(self.stall_s)  # silent, as a dead link, until its own read timeout

    def close(self) -> None:
        self.closed_by = threading.current_thread().name
        super().close()


def opener(*outcomes):
    """open_fn that returns / raises the given outcomes in turn."""
    queue = list(outcomes)

    def open_fn():
        item = queue.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    return open_fn


def fast(attempt: int) -> float:
    return 0.05


def collect(source, limit_s: float = 10.0) -> list[Frame]:
    frames, start = [], time.monotonic()
    for frame in source.frames():
        frames.append(frame)
        assert time.monotonic() - start < limit_s, "frames() did not end"
    return frames


def lose_and_regain(server: LiveServer, events: list[SourceEvent], results: list, back_s: float) -> list:
    """Kill ``server``, wait (≤ 5 s) for the source to report it lost, start it again, and wait (≤ ``back_s``)
    for 5 results after the reconnection; returns the results after it (fewer on a timeout)."""
    server.kill()
    deadline = time.monotonic() + 5
    while not any(e.state == "lost" for e in events) and time.monotonic() < deadline:
        time.sleep(0.05)
    server.start()
    deadline = time.monotonic() + back_s
    after: list = []
    while time.monotonic() < deadline:
        after = [r for r in results if events and events[-1].state == "reconnected" and r.done > events[-1].at]
        if len(after) >= 5:
            break
        time.sleep(0.05)
    return after


def test_backoff_doubles_up_to_thirty_seconds():
    assert [backoff_delay(k) for k in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize("how", ["error", "end", "stall"])
def test_a_drop_is_reopened_and_the_clock_runs_on(how):
    second = FakeLive(4, "error", value=2)
    source = ReconnectingSource("fake://cam", opener(second, *[SourceUnavailable("refused")] * 3),
                                first=FakeLive(5, how, value=1), retries=3, stall_timeout_s=0.3, backoff=fast)
    events: list[SourceEvent] = []
    source.add_listener(events.append)
    with pytest.raises(SourceUnavailable, match="gave up after 3 reconnection attempt"):
        frames = []
        for frame in source.frames():
            frames.append(frame)
    source.close()
    assert [f.image[0, 0, 0] for f in frames] == [1] * 5 + [2] * 4  # every frame of both connections
    assert [f.index for f in frames] == list(range(9))
    times = [f.timestamp for f in frames]
    assert all(b > a for a, b in zip(times, times[1:], strict=False))  # never back, although the second clock restarted at 0
    gap = float(times[5] - times[4])
    assert gap >= 0.04 and gap == pytest.approx(frames[5].captured - frames[4].captured, abs=0.06)
    if how == "stall":
        assert gap > 0.3  # the watchdog waited for the stall timeout: a real gap, kept in the timestamps
    states = [e.state for e in events]
    assert states == ["lost", "reconnected", "lost", "retrying", "retrying", "gave_up"]
    reason = {"error": "connection reset by peer", "end": "the stream ended", "stall": "no frame for 0.3 s"}[how]
    assert reason in events[0].reason and "reconnecting (attempt 1" in events[0].line()
    assert "attempt 2" in events[3].line() and "failed (refused)" in events[3].line()
    assert "reconnected after" in events[1].line()
    assert source.drops == 2 and source.down_s > 0
    assert source.take_events() == events  # the CLI's copy: the same changes, once
    assert source.take_events() == []



def test_a_source_that_opens_but_never_delivers_is_given_up():
    """A server that accepts every connection and drops it before a frame: each attempt counts
    towards --reconnect N (an opening without a frame is no reconnection), so the stream ends."""
    source = ReconnectingSource("fake://cam", opener(*[FakeLive(0, "error") for _ in range(5)]),
                                first=FakeLive(2, "error"), retries=3, backoff=fast, stall_timeout_s=30)
    events: list[SourceEvent] = []
    source.add_listener(events.append)
    got, failed = [], []

    def read():
        try:
            got.extend(source.frames())
        except SourceUnavailable as exc:
            failed.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(5)
    source.close()
    reader.join(1)
    assert len(got) == 2 and len(failed) == 1 and "gave up after 3 reconnection attempt" in str(failed[0])
    assert [e.state for e in events] == ["lost", "retrying", "retrying", "gave_up"]
    assert all(e.reason == "connection reset by peer" for e in events)  # the error, not the stall watchdog

def test_close_ends_frames_at_once_even_while_the_source_is_silent():
    stuck = FakeLive(2, "stall", stall_s=0.8)
    source = ReconnectingSource("fake://cam", opener(), first=stuck, retries=RECONNECT_FOREVER, stall_timeout_s=30)
    got = []
    reader = threading.Thread(target=lambda: got.extend(source.frames()))
    reader.start()
    time.sleep(0.3)
    t = time.monotonic()
    source.close()
    reader.join(2)
    assert not reader.is_alive() and time.monotonic() - t < 0.5
    assert len(got) == 2
    deadline = time.monotonic() + 2
    while stuck.closed_by is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stuck.closed_by and stuck.closed_by.startswith("source-")  # closed by its own thread, not under it


def test_unreachable_at_the_start_is_tried_in_the_background():
    source = ReconnectingSource("fake://cam", opener(SourceUnavailable("refused"), FakeLive(3, "end")),
                                first_error=SourceUnavailable("refused at start"), retries=2, backoff=fast,
                                stall_timeout_s=0.3)
    assert source.down and source.last_event.state == "unreachable" and "refused at start" in source.last_event.reason
    assert "not reachable (refused at start); trying again (attempt 1" in source.last_event.line()
    events = []
    source.add_listener(events.append)  # the change so far is replayed
    frames = []
    with pytest.raises(SourceUnavailable):
        for frame in source.frames():
            frames.append(frame)
    assert len(frames) == 3
    assert events[0].state == "unreachable" and [e.state for e in events][1:3] == ["retrying", "reconnected"]
    assert source.drops == 1  # the one after it ran; not being there at the start is no drop


def test_a_file_served_over_http_ends_when_it_ends():
    class Finite(FakeLive):
        finite = True

    source = ReconnectingSource("fake://vod", opener(), first=Finite(3, "end"), backoff=fast)
    assert len(collect(source)) == 3 and source.drops == 0


def test_reconnect_is_off_for_files_and_on_for_live_sources(clip10):
    from app.io.sources import FileSource

    assert isinstance(open_source(PipelineConfig(source_kind="video", source=str(clip10))), FileSource)
    with pytest.raises(Exception, match="reconnect"):
        PipelineConfig(source_kind="url", source="http://x/y", reconnect=-2)
    from app.cli.multi_run import reconnect_value

    assert [reconnect_value(v) for v in ("forever", "off", "3")] == [RECONNECT_FOREVER, 0, 3]


# ---------------------------------------------------------------------------- real servers
def test_http_server_killed_and_restarted_mid_run(tmp_path, tiny_weights, capsys):
    """The CLI on a live HTTP/MPEG-TS stream whose server is SIGKILLed after 30 frames and restarted:
    the run goes on, says so, detects frames after the reconnection, and the recording plays
    through with timestamps that never go back and show the gap."""
    from app.cli.cli import main

    out = tmp_path / "live.mp4"
    server = LiveServer("http", frames=300).start()

    def chaos():
        if server.wait_sent(30, 30):
            server.kill()
            time.sleep(0.3)
            server.start()

    t = time.monotonic()
    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    try:
        rc = main(["--url", server.url, "--record", str(out), "--weights", str(tiny_weights), "--headless",
                   "--stall-timeout", "2", "--max-frames", "60"])
    finally:
        thread.join(5)
        server.kill()
    took = time.monotonic() - t
    err = capsys.readouterr().err
    assert rc == 0, err
    assert took < 20
    assert "lost (reading" in err and "reconnecting (attempt 1, next in 1 s)" in err
    assert "reconnected after" in err and "1 drop(s)" in err
    pts, tb = decode_pts(out)
    seconds = [p * tb for p in pts]
    assert all(b > a for a, b in zip(seconds, seconds[1:], strict=False))
    gaps = [float(b - a) for a, b in zip(seconds, seconds[1:], strict=False)]
    cut = max(range(len(gaps)), key=gaps.__getitem__)
    assert gaps[cut] > 0.9  # the time the server was away: ~0.3 s dead + 1 s backoff + reopening
    assert len(seconds) - cut - 1 >= 3  # frames detected and recorded after the reconnection


def test_udp_stream_that_stops_and_resumes(tmp_path, tiny_detector):
    """A UDP MPEG-TS sender that stops (the link goes silent) and starts again: the stall watchdog
    notices, the stream is reopened, frames after it are processed, and the recording stays valid."""
    out = tmp_path / "udp.mp4"
    sender = LiveServer("udp", frames=300).start()
    config = PipelineConfig(source_kind="url", source=sender.url, record=str(out), stall_timeout_s=1.0,
                            open_timeout_s=8)
    results = []
    try:
        source = open_source(config)
        events: list[SourceEvent] = []
        source.add_listener(events.append)
        pipeline = Pipeline(config, tiny_detector, source, on_result=lambda r, a: results.append(r))
        pipeline.start()
        try:
            assert sender.wait_sent(35, 20)
            # a killed UDP sender is silence: no error, no end — only the watchdog can tell
            after = lose_and_regain(sender, events, results, back_s=15)
        finally:
            pipeline.stop()
    finally:
        sender.kill()
    states = [e.state for e in events]
    assert states[0] == "lost" and "no frame for 1 s" in events[0].reason and states[-1] == "reconnected"
    assert len(after) >= 5
    assert pipeline.error is None
    pts, tb = decode_pts(out)
    assert len(pts) == len(results) and all(b > a for a, b in zip(pts, pts[1:], strict=False))
    assert max(float((b - a) * tb) for a, b in zip(pts, pts[1:], strict=False)) > 1.0  # the silence is a gap in the file


@pytest.mark.slow  # ~15-25 s: the relay and the publisher start twice
@pytest.mark.skipif(not rtsp_relay_available(), reason="no RTSP server: apt-get install rtsp-server-perl")
def test_rtsp_server_killed_and_restarted(tmp_path, tiny_detector):
    """RTSP through Debian's rtsp-server-perl, fed by a publisher: both killed and started again."""
    out = tmp_path / "rtsp.mp4"
    server = LiveServer("rtsp", frames=300).start()
    results = []
    try:
        assert server.wait_sent(5, 20)
        config = PipelineConfig(source_kind="url", source=server.url, record=str(out), stall_timeout_s=1.5)
        source = open_source(config)
        events: list[SourceEvent] = []
        source.add_listener(events.append)
        pipeline = Pipeline(config, tiny_detector, source, on_result=lambda r, a: results.append(r))
        pipeline.start()
        try:
            deadline = time.monotonic() + 15
            while len(results) < 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            after = lose_and_regain(server, events, results, back_s=20)
        finally:
            pipeline.stop()
    finally:
        server.kill()
    assert [e.state for e in events][0] == "lost" and events[-1].state == "reconnected", [e.line() for e in events]
    assert len(after) >= 5 and pipeline.error is None
    pts, _ = decode_pts(out)
    assert len(pts) == len(results) and all(b > a for a, b in zip(pts, pts[1:], strict=False))
