"""The window with several streams, offscreen: the grid (1, 2×1, 2×2), click to enlarge and back, frames of
every stream on screen, a stream that is down says so, and closing finalises every recording."""

from __future__ import annotations

import threading

import pytest
from PyQt6.QtCore import QPoint, Qt

from app.config import PipelineConfig
from app.gui.grid import StreamGrid, grid_shape
from app.gui.main_window import MainWindow
from app.io.reconnect import ReconnectingSource, open_source
from app.io.sources import SourceUnavailable
from app.pipeline.pipeline import Stream
from tests.conftest import SAMPLE, decode_pts

WAIT_MS = 30_000


def test_grid_shapes():
    assert [grid_shape(n) for n in (1, 2, 3, 4, 5, 6, 7, 9, 10, 16)] == [
        (1, 1), (2, 1), (2, 2), (2, 2), (3, 2), (3, 2), (3, 3), (3, 3), (4, 3), (4, 4)]
    with pytest.raises(ValueError):
        grid_shape(0)


@pytest.mark.parametrize("n, cells", [(1, [(0, 0)]), (2, [(0, 0), (1, 0)]), (4, [(0, 0), (1, 0), (0, 1), (1, 1)])])
def test_tiles_are_laid_out_and_a_click_enlarges_one(qtbot, n, cells):
    names = [f"cam{i}" for i in range(n)]
    grid = StreamGrid(names)
    qtbot.addWidget(grid)
    grid.resize(800, 600)
    grid.show()
    qtbot.waitExposed(grid)
    tiles = [grid.tiles[name] for name in names]
    xs = sorted({t.geometry().x() for t in tiles})
    ys = sorted({t.geometry().y() for t in tiles})
    assert [(xs.index(t.geometry().x()), ys.index(t.geometry().y())) for t in tiles] == cells
    small = tiles[-1].size()
    assert small.width() <= 800 // len(xs) and small.height() <= 600 // len(ys)

    with qtbot.waitSignal(grid.enlarged_changed) as signal:
        qtbot.mouseClick(tiles[-1], Qt.MouseButton.LeftButton, pos=QPoint(20, 20))
    assert signal.args == [names[-1]] and grid.enlarged == names[-1] and grid.shape == (1, 1)
    qtbot.waitUntil(lambda: tiles[-1].width() > 780 and tiles[-1].height() > 580)
    assert [t.isVisible() for t in tiles] == [False] * (n - 1) + [True]

    qtbot.mouseClick(tiles[-1], Qt.MouseButton.LeftButton, pos=QPoint(20, 20))  # again: all streams
    assert grid.enlarged is None and all(t.isVisible() for t in tiles)
    qtbot.waitUntil(lambda: tiles[-1].size() == small)


def test_the_window_shows_every_stream_and_closing_finalises_the_recordings(qtbot, gui_detector, clip10, tmp_path):
    before = {t for t in threading.enumerate() if t.is_alive()}
    streams = []
    for name in ("left", "right"):
        config = PipelineConfig(source_kind="video", source=str(clip10), record=str(tmp_path / f"{name}.mp4"))
        streams.append(Stream(name, config, open_source(config)))
    # A third stream that is down from the start, retried only after a long wait: it says so.
    down = ReconnectingSource("rtsp://127.0.0.1:9/none", lambda: None, first_error=SourceUnavailable("refused"),
                              backoff=lambda k: 60.0)
    streams.append(Stream("gone", PipelineConfig(source_kind="url", source="rtsp://127.0.0.1:9/none"), down))
    window = MainWindow(gui_detector, output_dir=tmp_path)
    qtbot.addWidget(window)
    window.show()
    window.open_streams(streams, export=str(tmp_path / "dets.csv"))
    tiles = window.grid.tiles
    qtbot.waitUntil(lambda: all(tiles[n].view.image is not None for n in ("left", "right")), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.last_run_stats is not None and
                    all(window.last_run_stats.streams[n].frames_written == 10 for n in ("left", "right")),
                    timeout=WAIT_MS)
    assert window.grid.shape == (2, 2)
    assert tiles["left"].view.detections is not None and len(tiles["left"].view.detections) > 0
    assert "10 frames" in tiles["left"].caption.text() and "fps" in tiles["left"].caption.text()
    assert "reconnecting (attempt 1, next in" in tiles["gone"].caption.text()
    assert "mean batch" in window.total_label.text()

    window.close()
    for name in ("left", "right"):
        assert decode_pts(tmp_path / f"{name}.mp4") == decode_pts(clip10)
    assert (tmp_path / "dets.csv").read_text().startswith("stream,frame")
    left = {t for t in threading.enumerate() if t.is_alive() and not isinstance(t, threading._DummyThread)} - before
    assert not [t.name for t in left if not t.name.startswith("source-")], sorted(t.name for t in left)


@pytest.mark.parametrize("n", [1, 2])
def test_pause_stops_detecting_in_every_cell_and_resume_goes_on(qtbot, gui_detector, clip10, tmp_path, n):
    """Space pauses every stream (a file waits where it is: nothing is detected while paused) and
    resumes them; the status bar says so. A single stream is the grid of one cell."""
    streams = []
    for i in range(n):
        config = PipelineConfig(source_kind="video", source=str(clip10), track=True, lines=((0.5, 0.0, 0.5, 1.0),))
        streams.append(Stream(f"s{i}", config, open_source(config)))
    window = MainWindow(gui_detector, output_dir=tmp_path)
    qtbot.addWidget(window)
    window.show()
    window.toggle_pause()  # paused before the first frame
    window.open_streams(streams)
    qtbot.waitUntil(lambda: window.last_run_stats is not None and all(
        window.last_run_stats.streams[s.name].frames_read >= 2 for s in streams), timeout=WAIT_MS)
    assert "paused" in window.total_label.text()
    qtbot.wait(300)
    pipeline = window.controller.pipeline
    assert all(s.frames_processed == 0 for s in pipeline.run_stats().streams.values())
    qtbot.keyClick(window, Qt.Key.Key_Space)  # resume
    qtbot.waitUntil(lambda: window.last_run_stats.finished, timeout=WAIT_MS)
    assert [window.last_run_stats.streams[s.name].frames_written for s in streams] == [10] * n
    assert "paused" not in window.total_label.text()
    assert all(lane.analytics.summary_lines()[0].startswith("tracking: ") for lane in pipeline.lanes)
    overlays = [window.grid.tiles[s.name].view.overlay for s in streams]  # every cell draws its own line
    assert all(o is not None and [c.name for c in o.lines] == ["line 1"] for o in overlays)
    window.close()


def test_a_line_drawn_on_the_enlarged_cell_counts_in_every_stream(qtbot, gui_detector, tmp_path):
    """The mouse draws on the cell in focus (here the second, enlarged); the line reaches every lane."""
    from tests.app.gui.test_counting_gui import at

    streams = []
    for name in ("a", "b"):
        # the whole sample at its own pace (15 s): the run must still be on when the line arrives, which
        # a 1-s clip did not promise on a loaded machine (it could end before the pause took effect)
        config = PipelineConfig(source_kind="video", source=str(SAMPLE), realtime=True)
        streams.append(Stream(name, config, open_source(config)))
    window = MainWindow(gui_detector, output_dir=tmp_path)
    qtbot.addWidget(window)
    window.resize(1000, 640)
    window.show()
    window.toggle_pause()
    window.open_streams(streams)
    qtbot.waitUntil(lambda: window.controller.pipeline is not None, timeout=WAIT_MS)
    window.grid.toggle("b")
    view = window.view
    assert view is window.grid.tiles["b"].view and view.tool is window.shape_tool
    qtbot.keyClick(window, Qt.Key.Key_Space)  # resume: a frame to draw on
    qtbot.waitUntil(lambda: not window.is_paused, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: view.image is not None, timeout=WAIT_MS)
    window.set_paused(True)  # the files wait where they are: the run is still on when the line arrives
    qtbot.waitUntil(lambda: window.is_paused, timeout=WAIT_MS)
    qtbot.mouseClick(window.tracking_panel.line_button, Qt.MouseButton.LeftButton)
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=at(view, 0.5, 0.1))
    qtbot.mouseMove(view, at(view, 0.5, 0.5))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=at(view, 0.5, 0.9))
    assert len(window.config.lines) == 1 and window.grid.enlarged == "b"  # drawing did not toggle the cell
    pipeline = window.controller.last_pipeline
    qtbot.waitUntil(lambda: all(len(lane.analytics.lines) == 1 for lane in pipeline.lanes), timeout=WAIT_MS)
    assert all(lane.analytics.tracking for lane in pipeline.lanes)
    window.close()
    assert window.control_thread.isFinished()


def paused_streams(qtbot, gui_detector, clip, tmp_path, names=("a", "b")) -> MainWindow:
    """A shown window playing ``names`` (each the clip), paused before the first frame; and a list
    of the controller's recording answers (on), in ``window.answers``."""
    streams = []
    for name in names:
        config = PipelineConfig(source_kind="video", source=str(clip))
        streams.append(Stream(name, config, open_source(config)))
    window = MainWindow(gui_detector, output_dir=tmp_path)
    qtbot.addWidget(window)
    window.show()
    window.toggle_pause()
    window.open_streams(streams)
    qtbot.waitUntil(lambda: window.controller.pipeline is not None, timeout=WAIT_MS)
    window.answers = []
    window.controller.recording.connect(lambda _paths, on: window.answers.append(on))  # controller's thread
    return window


def test_record_to_with_several_streams_never_overwrites_their_files(qtbot, gui_detector, clip10, tmp_path,
                                                                     monkeypatch):
    """Record to… asks about the file it shows (rec.mp4); several streams write rec-<name>.mp4, which
    it never asked about: an existing one is refused in one line, and none of the streams records."""
    from PyQt6.QtWidgets import QFileDialog

    kept = tmp_path / "rec-a.mp4"
    kept.write_bytes(b"an earlier recording")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *_a, **_k: (str(tmp_path / "rec.mp4"), ""))
    window = paused_streams(qtbot, gui_detector, clip10, tmp_path)
    window.choose_recording()
    qtbot.waitUntil(lambda: bool(window.answers), timeout=WAIT_MS)
    assert window.answers == [False] and not window.controller.pipeline.record_sinks()
    qtbot.waitUntil(lambda: "rec-a.mp4" in window.error_banner.label.text(), timeout=WAIT_MS)
    window.set_paused(False)
    qtbot.waitUntil(lambda: window.last_run_stats is not None and window.last_run_stats.finished,
                    timeout=WAIT_MS)
    window.close()
    assert kept.read_bytes() == b"an earlier recording" and not (tmp_path / "rec-b.mp4").exists()


def test_r_with_several_streams_picks_a_name_free_for_every_stream(qtbot, gui_detector, clip10, tmp_path):
    """R's timestamped name is recording-<time>.mp4, and several streams write recording-<time>-<name>.mp4:
    when those are taken (an earlier recording of the same second), R takes the next free name
    rather than being refused."""
    import time

    now = int(time.time())
    for t in range(now - 2, now + 300):  # every name R could pick in the next minutes is taken for stream a
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(t))
        (tmp_path / f"recording-{stamp}-a.mp4").write_bytes(b"earlier")
    window = paused_streams(qtbot, gui_detector, clip10, tmp_path)
    window.toggle_recording()  # R
    qtbot.waitUntil(lambda: bool(window.answers), timeout=WAIT_MS)
    assert window.answers == [True] and not window.error_banner.isVisible()
    qtbot.waitUntil(lambda: len(window.recording_paths) == 2, timeout=WAIT_MS)
    assert all(p.stem.endswith(("-2-a", "-2-b")) for p in window.recording_paths), window.recording_paths
    window.close()


def test_a_stricter_threshold_applies_to_every_cell_on_screen(qtbot, gui_detector, clip10, tmp_path):
    """Paused or ended, the frames on screen are refiltered at once by a stricter threshold or class
    filter — in every cell, not only the one in focus (the others kept their boxes)."""
    window = paused_streams(qtbot, gui_detector, clip10, tmp_path)
    window.set_paused(False)
    qtbot.waitUntil(lambda: window.last_run_stats is not None and window.last_run_stats.finished,
                    timeout=WAIT_MS)
    views = [window.grid.tiles[name].view for name in ("a", "b")]
    qtbot.waitUntil(lambda: all(v.detections is not None and len(v.detections) > 0 for v in views),
                    timeout=WAIT_MS)
    top = max(float(v.detections.scores.max()) for v in views)
    window.threshold_control.set_value(min(1.0, top + 0.01))
    assert [len(v.detections) for v in views] == [0, 0]
    window.threshold_control.set_value(0.0)  # looser again: the boxes the detector gave come back
    assert all(len(v.detections) > 0 for v in views)
    window.close()
