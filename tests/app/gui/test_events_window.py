"""Events in the window (issue #22), offscreen: the real window plays the rendered crossing clip
(tests/app/crossing_clip.py: decoded by PyAV, the true boxes standing in for the detector, the real
tracker, counters, event sinks, clip writer and webhook publisher) with a counting line. What the
list must hold comes from the clip's paths, not from the code under test.

(Named to run before test_main_window.py, whose run_gui test leaves later windows of the same
process deaf to their controller; the run.py test here runs in a subprocess for the same reason.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest
from PyQt6.QtCore import Qt, QUrl

import app.gui.events_panel as events_panel
from app.analytics.count import Shape
from app.analytics.events import EventsConfig
from app.config import PipelineConfig
from app.gui.events_feed import WindowEvent
from app.gui.events_panel import CLIP_ROLE, MAX_ROWS, RECORD_ROLE, EventsPanel
from app.gui.main_window import MainWindow
from tests.app import crossing_clip as clip
from tests.app.gui.images import qimage_to_array

WAIT_MS = 60_000
ROOT = Path(__file__).resolve().parents[3]


class TruthWindowDetector(clip.TruthDetector):
    """The clip's true boxes, with the knobs the window reads and turns (they change nothing)."""

    class_names = clip.NAMES
    classes = ()
    proposal_count = 300
    score_threshold = 0.5
    precision = "fp32"
    device = SimpleNamespace(type="cpu")
    int8_available = False
    notes: list = []

    def set_proposal_count(self, n): self.proposal_count = n
    def set_score_threshold(self, x): self.score_threshold = x
    def set_classes(self, names): self.classes = tuple(names)
    def set_input_size(self, size): pass


def live_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive() and not isinstance(t, threading._DummyThread)}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return clip.write_clip(tmp_path_factory.mktemp("crossing") / "crossing.mp4")


@pytest.fixture
def webhook():
    """A local HTTP server that accepts every POST: the webhook's counters go up for real."""
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="test-webhook", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/events", bodies
    server.shutdown()
    server.server_close()
    thread.join(5)


def alike(thumb: np.ndarray, box, frame: int) -> float:
    """The share of ``thumb``'s pixels of nearly the colour of the clip's ``frame`` there: frame
    pixels → thumbnail pixels by the documented cut (the box and a quarter of its size around it)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    xa, ya = max(0, int(x1 - w / 4 - 2)), max(0, int(y1 - h / 4 - 2))
    xb, yb = min(clip.SIZE[0], int(np.ceil(x2 + w / 4 + 2))), min(clip.SIZE[1], int(np.ceil(y2 + h / 4 + 2)))
    region = cv2.resize(clip.boxes_frame(frame)[ya:yb, xa:xb], thumb.shape[1::-1], interpolation=cv2.INTER_AREA)
    return float((np.abs(region.astype(int) - thumb.astype(int)).max(axis=2) <= 30).mean())


def wanted_crossings() -> Counter:
    expected = clip.expected_counts()
    return Counter({(way, name): n for way in ("in", "out") for name, n in expected[way].items()})


def test_events_fill_the_list_open_their_clips_and_the_heat_map_shows(qtbot, tmp_path, rendered, webhook,
                                                                     monkeypatch):
    url, bodies = webhook
    before = live_threads()
    win = MainWindow(TruthWindowDetector(), output_dir=tmp_path, pace_files=False)
    qtbot.addWidget(win)
    win.resize(1100, 700)
    win.show()
    panel = win.events_panel
    events = EventsConfig(counting=True, events=str(tmp_path / "events.jsonl"), clips=str(tmp_path / "clips"),
                          pre_s=1.0, post_s=1.0, webhook=url)
    win.open_source(PipelineConfig(source_kind="video", source=str(rendered), track=True, events=events,
                                   lines=(Shape.parse("line", clip.LINE).coords,)))
    qtbot.waitUntil(lambda: win.last_stats is not None and win.last_stats.frames_written == clip.FRAMES
                    and not win.is_running, timeout=WAIT_MS)

    # The list holds the clip's crossings: their count, kinds and classes; the same as the file's.
    wanted = wanted_crossings()
    qtbot.waitUntil(lambda: panel.list.count() == sum(wanted.values()), timeout=WAIT_MS)
    records = [panel.list.item(i).data(RECORD_ROLE) for i in range(panel.list.count())]
    assert Counter((r["event"], r["class"]) for r in records) == wanted
    assert {r["kind"] for r in records} == {"line"}
    written = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(r["frame"], r["track_id"], r["event"], r["clip"]) for r in records] == \
           [(r["frame"], r["track_id"], r["event"], r["clip"]) for r in written]
    first = records[0]
    assert panel.list.item(0).text().split() == [f"{first['time_s']:.2f}", "s", "line", "1", first["event"], "·",
                                                 first["class"], f"#{first['track_id']}"]
    assert "events: line in 2, line out 2" in panel.summary_label.text()

    # Each row has a thumbnail, cut from its own drawn frame at its box.
    for i, r in enumerate(records):
        icon = panel.list.item(i).icon()
        assert not icon.isNull()
        thumb = qimage_to_array(icon.pixmap(64, 64).toImage())
        assert max(thumb.shape[:2]) <= 64
        # the same region of the clip's own frame looks like it (boxes, labels and the counts drawn
        # over it aside), and clearly more than that region a second earlier or later, when the
        # objects stood elsewhere
        own, others = alike(thumb, r["box"], r["frame"]), [alike(thumb, r["box"], r["frame"] + d) for d in (-10, 10)]
        assert own >= 0.4 and own >= max(others) + 0.1, (r, own, others)  # measured: 0.46-0.70 vs 0.30-0.36

    # Enter on a row opens its clip with the system's player.
    opened: list[QUrl] = []
    monkeypatch.setattr(events_panel, "QDesktopServices", SimpleNamespace(openUrl=opened.append))
    panel.list.setFocus()
    panel.list.setCurrentRow(2)
    qtbot.keyClick(panel.list, Qt.Key.Key_Return)
    clip_path = Path(panel.list.item(2).data(CLIP_ROLE))
    assert opened == [QUrl.fromLocalFile(str(clip_path.resolve()))]
    assert clip_path.parent == tmp_path / "clips"
    with av.open(str(clip_path)) as container:
        assert sum(1 for _ in container.decode(video=0)) >= clip.RATE  # ≥ pre + post − the stream's ends

    # The alert outputs and their live counters: every event went to the webhook.
    qtbot.waitUntil(lambda: f"sent {len(records)}, retried 0, dropped 0" in panel.outputs_label.text(),
                    timeout=WAIT_MS)
    text = panel.outputs_label.text()
    assert f"events file: {tmp_path / 'events.jsonl'} · {len(records)} written" in text
    assert "clips: " in text and "MQTT: off" in text and f"webhook: {url}" in text
    assert len(bodies) == len(records)

    # The heat-map toggle: the shown frame changes where objects walked (the first person's feet,
    # y ≈ 110, x 60 → 580), not in the top rows where nobody stood; off again, it is the frame again.
    plain = qimage_to_array(win.view.image)
    panel.heat_check.setChecked(True)
    heat = qimage_to_array(win.view.image)
    diff = np.abs(heat.astype(int) - plain.astype(int)).mean(axis=2)
    assert diff[100:115, 100:540].mean() > 20, diff[100:115, 100:540].mean()
    assert diff[0:15].mean() < 2
    panel.heat_check.setChecked(False)
    assert np.array_equal(qimage_to_array(win.view.image), plain)

    win.close()
    assert win.control_thread.isFinished()
    assert live_threads() <= before, f"threads left: {sorted(t.name for t in live_threads() - before)}"


def test_f5_keeps_the_list_flowing_without_rewriting_the_events_file(qtbot, tmp_path, rendered):
    """A restart may not refuse (or overwrite) this run's events file: the next run lists its events
    and writes new clips, and the file keeps the first run's lines."""
    det = TruthWindowDetector()
    win = MainWindow(det, output_dir=tmp_path, pace_files=False)
    qtbot.addWidget(win)
    win.show()
    events = EventsConfig(counting=True, events=str(tmp_path / "events.jsonl"), clips=str(tmp_path / "clips"),
                          pre_s=0.5, post_s=0.5)
    win.open_source(PipelineConfig(source_kind="video", source=str(rendered), track=True, events=events,
                                   lines=(Shape.parse("line", clip.LINE).coords,)))
    n = sum(wanted_crossings().values())
    qtbot.waitUntil(lambda: win.events_panel.list.count() == n and not win.is_running, timeout=WAIT_MS)
    first = (tmp_path / "events.jsonl").read_text()
    det.seen = 0  # the truth detector counts frames: the restarted file starts at frame 0 again
    win.restart()
    qtbot.waitUntil(lambda: win.events_panel.list.count() == 2 * n, timeout=WAIT_MS)
    assert not win.error_banner.isVisible()
    assert (tmp_path / "events.jsonl").read_text() == first
    clips = {win.events_panel.list.item(i).data(CLIP_ROLE) for i in range(2 * n)}
    assert all(Path(c).parent == tmp_path / "clips" for c in clips) and len(clips) > 2
    win.close()
    assert win.control_thread.isFinished()


class FrameMatchingTruthDetector(TruthWindowDetector):
    """The clip's true boxes for frames of several streams in any order: each frame is known by the
    rendered frame it is nearest to (the clip's boxes move every frame)."""

    def __init__(self) -> None:
        super().__init__()
        self.frames = np.stack([small(clip.boxes_frame(i)) for i in range(clip.FRAMES)])

    def detect(self, frames, **kwargs):
        index = [int(np.abs(self.frames - small(image)).reshape(len(self.frames), -1).mean(1).argmin())
                 for image in frames]
        return [clip.detections(i) for i in index]


def small(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (160, 90), interpolation=cv2.INTER_AREA).astype(np.float32)


def test_two_streams_list_both_streams_events_and_record_button_records_both(qtbot, tmp_path, rendered):
    """Several streams: the list holds every stream's crossings, each named by its stream, and the
    record button records every stream (rec.mp4 → rec-<stream>.mp4, as --record names them)."""
    from app.io.reconnect import open_source
    from app.pipeline.pipeline import Stream

    win = MainWindow(FrameMatchingTruthDetector(), output_dir=tmp_path, pace_files=False)
    qtbot.addWidget(win)
    win.show()
    streams = []
    for name in ("east", "west"):
        config = PipelineConfig(source_kind="video", source=str(rendered), track=True,
                                lines=(Shape.parse("line", clip.LINE).coords,))
        streams.append(Stream(name, config, open_source(config)))
    win.toggle_pause()  # paused from the first frame: the recording starts before any result
    win.open_streams(streams)
    win.start_recording(tmp_path / "rec.mp4")
    wanted = [tmp_path / "rec-east.mp4", tmp_path / "rec-west.mp4"]
    qtbot.waitUntil(lambda: win.recording_paths == wanted, timeout=WAIT_MS)
    win.toggle_pause()
    n = sum(wanted_crossings().values())
    qtbot.waitUntil(lambda: win.events_panel.list.count() == 2 * n and not win.is_running, timeout=WAIT_MS)
    records = [win.events_panel.list.item(i).data(RECORD_ROLE) for i in range(2 * n)]
    for name in ("east", "west"):
        assert Counter((r["event"], r["class"]) for r in records if r["stream"] == name) == wanted_crossings(), name
    qtbot.waitUntil(lambda: win.recording_paths == [], timeout=WAIT_MS)  # finalised at the end of the files
    for path in wanted:
        with av.open(str(path)) as container:
            assert sum(1 for _ in container.decode(video=0)) == clip.FRAMES, path
    win.close()
    assert win.control_thread.isFinished()


def test_without_tracking_nothing_is_listed_and_nothing_fails(qtbot, tmp_path, rendered):
    """No line, no zone, tracking off (the window's default): the window's own event sink and heat
    map see detections without IDs — no events, no error, every frame shown."""
    win = MainWindow(TruthWindowDetector(), output_dir=tmp_path, pace_files=False)
    qtbot.addWidget(win)
    win.show()
    win.open_source(PipelineConfig(source_kind="video", source=str(rendered)))
    qtbot.waitUntil(lambda: win.last_stats is not None and win.last_stats.frames_written == clip.FRAMES
                    and not win.is_running, timeout=WAIT_MS)
    assert not win.error_banner.isVisible() and win.controller.pipeline is None
    assert win.events_panel.list.count() == 0 and win.events_panel.summary_label.text() == "no events yet"
    plain = qimage_to_array(win.view.image)
    win.events_panel.heat_check.setChecked(True)  # an empty heat map: the frame as it was
    assert np.array_equal(qimage_to_array(win.view.image), plain)
    win.close()
    assert win.control_thread.isFinished()


def test_the_list_keeps_the_last_500_events(qtbot):
    panel = EventsPanel()
    qtbot.addWidget(panel)
    thumb = np.zeros((40, 64, 3), np.uint8)
    for k in range(MAX_ROWS + 10):
        panel.add_event(WindowEvent({"time_s": k / 10, "kind": "zone", "zone": "zone 1", "event": "enter",
                                     "class": "car", "track_id": k, "clip": None}, thumb))
    assert MAX_ROWS == 500 and panel.list.count() == MAX_ROWS
    assert panel.list.item(0).data(RECORD_ROLE)["track_id"] == 10  # the oldest went first
    assert "510 events: zone enter 510" in panel.summary_label.text()


def test_a_full_list_keeps_the_row_being_read_in_place(qtbot):
    """The list is full and the user has scrolled up to read (or double-click) a row: new events drop
    the oldest rows, and the row under the mouse stays where it is rather than sliding up by one a
    row each event (a double-click could then open another event's clip)."""
    from PyQt6.QtWidgets import QAbstractItemView

    panel = EventsPanel()
    qtbot.addWidget(panel)
    panel.resize(320, 420)
    panel.show()
    qtbot.waitExposed(panel)

    def add(k: int) -> None:
        panel.add_event(WindowEvent({"time_s": k / 10, "kind": "line", "line": "line 1", "event": "in",
                                     "class": "car", "track_id": k, "clip": None}))

    def top_row() -> int | None:  # the row at the top of the list's viewport (None until laid out)
        item = panel.list.itemAt(4, 4)
        return None if item is None else item.data(RECORD_ROLE)["track_id"]

    for k in range(MAX_ROWS):
        add(k)
    panel.list.scrollToItem(panel.list.item(200), QAbstractItemView.ScrollHint.PositionAtTop)
    qtbot.waitUntil(lambda: top_row() == 200)
    for k in range(MAX_ROWS, MAX_ROWS + 5):
        add(k)
    assert panel.list.item(0).data(RECORD_ROLE)["track_id"] == 5
    qtbot.waitUntil(lambda: top_row() == 200, timeout=2000)


DRIVER = """
import json, sys
sys.path.insert(0, {root!r})
import app.pipeline.fastpath
from tests.app.gui.test_events_window import TruthWindowDetector
app.pipeline.fastpath.build_detector = lambda config, reprobe=False: (TruthWindowDetector(), SimpleSetup())

class SimpleSetup:
    def with_threads(self, config):
        return config

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication
from app.gui.main_window import MainWindow
from app.gui.events_panel import RECORD_ROLE
rows = []

def poll():
    wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
    if wins and wins[0].events_panel.list.count() >= {n} and not wins[0].is_running and wins[0].frames_displayed:
        lst = wins[0].events_panel.list
        rows.extend(lst.item(i).data(RECORD_ROLE) for i in range(lst.count()))
        wins[0].close()
    else:
        QTimer.singleShot(100, poll)

import app.gui.launch as launch
make_app = launch.qt_application

def qt_application():  # the poll starts once run_gui has made the QApplication
    qapp = make_app()
    QTimer.singleShot(100, poll)
    return qapp

launch.qt_application = qt_application
from app.cli.run import main
status = main(sys.argv[1:])
print("ROWS " + json.dumps(rows))
sys.exit(status)
"""


def test_run_py_with_events_opens_the_window_with_the_events_listed(tmp_path, rendered):
    """``run.py --video X --line … --events … --event-clips …`` with a display: the window opens and
    its list fills with the crossings (a subprocess: run_gui's event loop ends the process's Qt)."""
    n = sum(wanted_crossings().values())
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(root=str(ROOT), n=n))
    env = {**os.environ, "DISPLAY": ":99", "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, str(driver), "--video", str(rendered), "--line", clip.LINE,
                          "--events", str(tmp_path / "e.jsonl"), "--event-clips", str(tmp_path / "clips"),
                          "--pre", "1", "--post", "1"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(next(line[5:] for line in out.stdout.splitlines() if line.startswith("ROWS ")))
    assert Counter((r["event"], r["class"]) for r in rows) == wanted_crossings()
    assert all(r["clip"] and Path(r["clip"]).parent == tmp_path / "clips" for r in rows)
    assert len((tmp_path / "e.jsonl").read_text().splitlines()) == n
