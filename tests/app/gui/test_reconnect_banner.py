"""The single-stream window while its live stream drops: it stays up, counts down to the next
attempt, and goes on showing frames once the server is back."""

from __future__ import annotations

import time

from app.bench.live_streams import LiveServer
from app.config import PipelineConfig
from app.gui.main_window import MainWindow
from app.io.reconnect import SourceEvent

WAIT_MS = 30_000  # generous: 2 shared CI cores; the waits end as soon as the condition holds


def window_with_a_stream_down(qtbot, gui_detector, tmp_path) -> tuple[MainWindow, float]:
    """A window whose stream rtsp://cam/1 was lost at ``now`` (attempt 2, next in 4 s): the banner shows."""
    window = MainWindow(gui_detector, output_dir=tmp_path)
    qtbot.addWidget(window)
    window.show()
    now = time.monotonic()
    window._on_source_state(SourceEvent("rtsp://cam/1", "lost", "connection reset", 2, now + 4.0, 1.0, now))
    assert window.warning_banner.isVisible()
    return window, now


def test_the_banner_counts_down_and_goes_when_the_source_is_back(qtbot, gui_detector, tmp_path):
    window, now = window_with_a_stream_down(qtbot, gui_detector, tmp_path)
    assert window.warning_banner.label.text() == (
        "⚠ rtsp://cam/1: reconnecting (attempt 2, next in 4 s) — connection reset")
    window._on_source_state(SourceEvent("rtsp://cam/1", "reconnected", "", 2, None, 5.0, now + 5))
    assert not window.warning_banner.isVisible() and window.source_event is None
    assert "reconnected after 5.0 s down" in window.statusBar().currentMessage()
    window.close()


def test_a_killed_server_is_reported_and_frames_resume(qtbot, gui_detector, tmp_path):
    server = LiveServer("http", frames=300).start()
    window = MainWindow(gui_detector, output_dir=tmp_path)
    qtbot.addWidget(window)
    window.show()
    try:
        window.open_source(PipelineConfig(source_kind="url", source=server.url, stall_timeout_s=2.0))
        qtbot.waitUntil(lambda: window.frames_displayed >= 3, timeout=WAIT_MS)
        server.kill()
        banner = window.warning_banner
        qtbot.waitUntil(lambda: banner.isVisible() and "reconnecting" in banner.label.text(), timeout=WAIT_MS)
        assert "reconnecting (attempt 1" in banner.label.text() and window.is_running
        server.start()
        qtbot.waitUntil(lambda: not window.warning_banner.isVisible(), timeout=WAIT_MS)
        shown = window.frames_displayed
        qtbot.waitUntil(lambda: window.frames_displayed >= shown + 3, timeout=WAIT_MS)
        assert "reconnected after" in window.statusBar().currentMessage()
    finally:
        window.close()
        server.kill()


def test_opening_another_source_takes_the_last_ones_countdown_away(qtbot, gui_detector, tmp_path, clip10):
    """The stream is down and the banner counts down; the user opens a file instead: the banner no
    longer speaks of the stream that is gone (it stayed, frozen, over the file's frames)."""
    window, _ = window_with_a_stream_down(qtbot, gui_detector, tmp_path)
    window.open_source(PipelineConfig(source_kind="video", source=str(clip10)))
    qtbot.waitUntil(lambda: window.frames_displayed >= 1, timeout=WAIT_MS)
    assert not window.warning_banner.isVisible() or "rtsp://cam/1" not in window.warning_banner.label.text()
    window.close()


def test_one_stream_back_leaves_the_banner_of_another_still_down(qtbot, gui_detector, tmp_path):
    """Several live streams: two drop, one comes back — the banner goes on counting down for the
    other (it was hidden, as if every stream were back), and the one back is no longer in it."""
    window = MainWindow(gui_detector, output_dir=tmp_path)
    qtbot.addWidget(window)
    window.show()
    now = time.monotonic()
    window._on_source_state(SourceEvent("rtsp://cam/1", "lost", "connection reset", 1, now + 4.0, 1.0, now))
    window._on_source_state(SourceEvent("rtsp://cam/2", "lost", "refused", 1, now + 4.0, 1.0, now))
    assert "rtsp://cam/1" in window.warning_banner.label.text()
    window._on_source_state(SourceEvent("rtsp://cam/1", "reconnected", "", 1, None, 2.0, now + 2))
    text = window.warning_banner.label.text()
    assert window.warning_banner.isVisible() and "rtsp://cam/2: reconnecting" in text and "cam/1" not in text
    window._on_source_state(SourceEvent("rtsp://cam/2", "reconnected", "", 1, None, 3.0, now + 3))
    assert not window.warning_banner.isVisible() and window.source_event is None
    window.close()
