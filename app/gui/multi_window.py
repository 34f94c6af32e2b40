"""The window of a multi-stream run: a grid of the streams (click one to enlarge it), each tile with
its fps, latency and state (a stream that dropped says "reconnecting (attempt k, next in s)"), and
the run's total fps and batch size in the status bar.

Threads: the streams' sink threads push results into one ``FrameBridge`` per stream (newest only);
the GUI thread takes them on a queued signal. Stats are read every 250 ms (a snapshot, no lock held
for long). Closing the window (or Ctrl-C / SIGTERM in the terminal) stops the run — every recording
and the export finalised — before ``closeEvent`` returns; the window is hidden first.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence

from PyQt6.QtCore import QSize, Qt, QTimer
from PyQt6.QtGui import QAction, QKeySequence
from PyQt6.QtWidgets import QLabel, QMainWindow

from app.gui.bridge import FrameBridge
from app.gui.grid import StreamGrid
from app.pipeline.multi import MultiPipeline, MultiStats, Stream

log = logging.getLogger(__name__)

STATS_INTERVAL_MS = 250


class MultiWindow(QMainWindow):
    """Runs ``streams`` through one ``detector`` (a ``MultiPipeline``) and shows them in a grid.

    Args:
        streams: the streams, sources open.
        detector: a built ``detector.Detector``.
        export, overwrite: the run's export file (``stream`` column) and whether outputs may be replaced.
    """

    def __init__(self, streams: Sequence[Stream], detector, *, export: str | None = None,
                 overwrite: bool = False, events=None) -> None:
        super().__init__()
        self.names = [s.name for s in streams]
        self.bridges = {name: FrameBridge(self) for name in self.names}
        self.pipeline = MultiPipeline(streams, detector, export=export, overwrite=overwrite, on_result=self._push,
                                      events=events)
        self.last_stats: MultiStats | None = None
        self._closed = False

        self.grid = StreamGrid(self.names)
        self.setCentralWidget(self.grid)
        self.total_label = QLabel("-- fps")
        self.hint_label = QLabel("click a stream to enlarge it; click again (or Esc) for all")
        self.statusBar().addWidget(self.hint_label, 1)
        self.statusBar().addPermanentWidget(self.total_label)
        self.setWindowTitle(f"{len(self.names)} streams — Faster R-CNN live detection")
        self.resize(1180, 760)

        queued = Qt.ConnectionType.QueuedConnection
        for name, bridge in self.bridges.items():
            bridge.frame_available.connect(lambda n=name: self._show(n), queued)
        self.grid.enlarged_changed.connect(self._on_enlarged)
        for text, keys, slot in (("Show all streams", ["Esc"], self._escape), ("Quit", ["Q", "Ctrl+Q"], self.close),
                                 ("Pause / resume", ["Space"], self.toggle_pause)):
            action = QAction(text, self)
            action.setShortcuts([QKeySequence(k) for k in keys])
            action.triggered.connect(slot)
            self.addAction(action)
        for i, name in enumerate(self.names[:9], 1):  # 1…9 enlarge a stream from the keyboard
            action = QAction(f"Enlarge {name}", self)
            action.setShortcut(QKeySequence(str(i)))
            action.triggered.connect(lambda _=False, n=name: self.grid.toggle(n))
            self.addAction(action)
        self._timer = QTimer(self)
        self._timer.setInterval(STATS_INTERVAL_MS)
        self._timer.timeout.connect(self.refresh_stats)

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        """Open the outputs and start the streams (raises on an output that cannot be written)."""
        self.pipeline.start()
        self._timer.start()

    def _push(self, name: str, result, _annotated) -> None:
        """On a stream's sink thread: offer its newest result to the GUI."""
        self.bridges[name].push(result)

    def _show(self, name: str) -> None:
        result = self.bridges[name].take()
        if result is not None and not self._closed:
            self.grid.tiles[name].show_result(result)

    def refresh_stats(self) -> None:
        stats = self.pipeline.stats()
        self.last_stats = stats
        for name, tile in self.grid.tiles.items():
            tile.set_stats(stats.streams.get(name), stats.states.get(name, ""))
        total = f"{stats.fps:.1f}" if stats.fps else "--"
        batch = f"{stats.mean_batch:.2f}" if stats.mean_batch else "--"
        ended = " · all streams ended" if stats.finished else " · paused (Space resumes)" if stats.paused else ""
        self.total_label.setText(f"all streams: {total} fps · mean batch {batch}{ended}")
        if stats.finished:
            self._timer.stop()

    def toggle_pause(self) -> None:
        """Stop detecting in every stream, or go on: files wait where they are, live streams keep their newest frame."""
        if self.pipeline.paused:
            self.pipeline.resume()
        else:
            self.pipeline.pause()
        self.refresh_stats()

    def _on_enlarged(self, name) -> None:
        self.hint_label.setText(f"{name} — click it (or Esc) for all streams" if name else
                                "click a stream to enlarge it; click again (or Esc) for all")

    def _escape(self) -> None:
        if self.grid.enlarged is not None:
            self.grid.show_all()
        else:
            self.close()

    # ------------------------------------------------------------------ shutdown
    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.hide()  # gone at once, while the recordings are finalised
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop every stream and finalise the recordings and the export (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._timer.stop()
        self.pipeline.stop()
        self.refresh_stats()

    def sizeHint(self) -> QSize:
        return QSize(1180, 760)


def run_multi_gui(streams: Sequence[Stream], detector_config, *, export: str | None = None,
                  overwrite: bool = False, reprobe: bool = False, events=None) -> int:
    """The grid window on ``streams`` until it closes; 130 after Ctrl-C / SIGTERM, else Qt's status.
    Qt's platform and the detector are checked first, so a problem there is one line, no window."""
    from app.gui.launch import qt_application
    from app.pipeline.fastpath import build_detector

    try:
        app = qt_application()
        detector, setup = build_detector(detector_config, reprobe=reprobe)  # the CPU fast path, as run.py's
        for line in setup.notes:
            print(f"note: {line}", file=sys.stderr)
        window = MultiWindow(streams, detector, export=export, overwrite=overwrite, events=events)
    except BaseException:
        for stream in streams:
            stream.source.close()
        raise
    window.start()
    window.show()
    interrupted = []

    def on_signal(*_args) -> None:
        interrupted.append(True)
        window.close()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    wake = QTimer()  # Python runs signal handlers only between bytecodes: wake it while Qt's loop runs
    wake.timeout.connect(lambda: None)
    wake.start(200)
    try:
        status = app.exec()
    finally:
        wake.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        window.shutdown()
    for name, exc in window.pipeline.errors().items():
        print(f"stream {name}: {exc}", file=sys.stderr)
    return 130 if interrupted else int(status)
