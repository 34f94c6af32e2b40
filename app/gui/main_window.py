"""The window: a grid of live video with detections (one cell per stream: a single source is the
grid of one cell), performance against 30/60 fps, live controls that act on every stream.

Threads: the GUI thread owns every widget. The pipeline's sink threads push results into a
``FrameBridge`` (each stream's newest frame only) and a ``PipelineController`` on its own QThread
does every blocking pipeline call — opening, pausing, recording, stopping; both talk to the window
by queued signals. Closing the window (or Ctrl-C / SIGTERM in the terminal) stops the pipeline,
finalises every recording and the export, and ends the controller's thread before ``closeEvent``
returns; the window is hidden first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from PyQt6.QtCore import QSignalBlocker, Qt, QTimer
from PyQt6.QtGui import QAction, QKeySequence
from PyQt6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from app.config import PipelineConfig
from app.errors import one_line
from app.gui.bridge import FrameBridge, rgb_to_qimage
from app.gui.controller import STOP_TIMEOUT_S, StreamsRun, default_output_name, start_controller
from app.gui.events_feed import for_next_source
from app.gui.fps_meter import RollingMean
from app.gui.grid import StreamGrid
from app.gui.tracking import ShapeTool, TrackingControl
from app.gui.video_view import VideoView
from app.gui.widgets import Banner, box, set_checked_quietly
from app.gui.window_controls import ControlPanel, ControlStrip, model_text
from app.io.paths import stream_name
from app.pipeline.pipeline import Stream
from app.stats import FpsMeter, MultiStats, PipelineStats

log = logging.getLogger(__name__)

VIDEO_FILTER = "Videos (*.mp4 *.mkv *.mov *.m4v *.avi *.webm *.mpg *.mpeg *.ts *.flv *.wmv);;All files (*)"
NO_SOURCE = "no source"
NO_SOURCE_TEXT = "No video — open a file or a camera from the File menu"


class MainWindow(QMainWindow):
    """The detector's live window.

    Args:
        detector: a built ``detector.Detector``; its knobs are driven live.
        output_dir: where the default recording and screenshot names go (default: the current folder).
        pace_files: play files and image folders at their own frame rate (like a player) rather
            than as fast as the detector allows.
    """

    def __init__(self, detector, *, output_dir: str | Path | None = None, pace_files: bool = True) -> None:
        super().__init__()
        self.detector = detector
        self.output_dir = Path(output_dir) if output_dir is not None else Path.cwd()
        self.pace_files = pace_files
        self.config: PipelineConfig | None = None
        self.recording_paths: list[Path] = []  # one per stream while recording
        self.last_screenshot: Path | None = None
        self.is_paused = self._pause_wanted = False
        self._record_wanted = False  # the last record request (on / off), until the controller answers
        self.is_running = False
        self.frames_displayed = 0
        self.last_result = None
        self.last_stats: PipelineStats | None = None  # the stream in focus (with the target's status)
        self.last_run_stats: MultiStats | None = None  # every stream's, and the run's totals
        self.stream_pairs: list[tuple[str, PipelineConfig]] | None = None  # (name, config) of several streams
        self.streams_events = None
        self._failures_shown: set[str] = set()  # output failures already in the banner
        self.down: dict[str, object] = {}  # each live source down now: its latest event (app/io/reconnect.py)
        self._closed = False

        self.meter = FpsMeter(window_s=1.0)
        self.latency = RollingMean(30)
        self.bridge = FrameBridge(self)
        self.controller, self.control_thread = start_controller(detector, self.bridge)

        self.setWindowTitle("Faster R-CNN — live detection")
        self.resize(1180, 720)
        self.setAcceptDrops(True)  # drop a video file or an image folder on the window to play it
        self._build_ui()
        self._build_actions()
        self._connect()
        if notes := [n for n in getattr(detector, "notes", []) if n]:  # e.g. an untrained model
            self.warning_banner.show_message("⚠ " + "\n⚠ ".join(notes))

        self._status_timer = QTimer(self, interval=200, timeout=self._refresh_fps)
        self._status_timer.start()

    # ================================================================== layout
    def _build_ui(self) -> None:
        self.grid = StreamGrid([NO_SOURCE])  # the video area: one cell per stream
        self.view.clear(NO_SOURCE_TEXT)
        self.warning_banner = Banner("warning")
        self.error_banner = Banner("error")
        strip = ControlStrip()
        central = QWidget()
        box(QVBoxLayout(central), self.warning_banner, self.error_banner, (self.grid, 1), strip).setSpacing(0)
        panel = ControlPanel(self.detector)
        for part, names in ((panel, "performance tracking_panel events_panel proposal_control threshold_control "
                                    "precision_combo proposals_seen target_control class_list"),
                            (strip, "open_button pause_button record_button screenshot_button")):
            for name in names.split():  # aliases: the window's code and the tests read these widgets
                setattr(self, name, getattr(part, name))
        self.shape_tool = ShapeTool(self.view)  # draws counting lines and zones with the mouse

        root = QWidget()
        box(QHBoxLayout(root), (central, 1), panel).setSpacing(0)
        self.setCentralWidget(root)

        self.source_label = QLabel("no source")
        self.total_label = QLabel("")  # the run's fps and batch, and whether it is paused or ended
        self.model_label = QLabel(model_text(self.detector))
        self.statusBar().addWidget(self.source_label, 1)
        self.statusBar().addPermanentWidget(self.total_label)
        self.statusBar().addPermanentWidget(self.model_label)

    @property
    def view(self) -> VideoView:
        """The video of the cell in focus: the enlarged one, else the first (a single stream's)."""
        return self.grid.tiles[self.focus].view

    @property
    def focus(self) -> str:
        return self.grid.enlarged or self.grid.names[0]

    def _build_actions(self) -> None:
        def action(text: str, slot, shortcuts=(), checkable: bool = False, tip: str = "") -> QAction:
            act = QAction(text, self, checkable=checkable, statusTip=tip, triggered=slot)
            act.setShortcuts([QKeySequence(s) for s in shortcuts])
            self.addAction(act)  # shortcuts work while the menu is closed
            return act

        self.open_file_action = action("Open &video…", self.choose_video, ["Ctrl+O"], tip="open a video file")
        self.open_images_action = action("Open &image folder…", self.choose_images, tip="open a folder of images")
        self.open_camera_action = action("Open &camera…", self.choose_camera, ["Ctrl+K"], tip="open a camera by index")
        self.open_url_action = action("Open stream &URL…", self.choose_url, ["Ctrl+U"], tip="open an rtsp:// or http:// stream")
        self.restart_action = action("&Restart source", self.restart, ["F5"], tip="play the current source again")
        self.pause_action = action("&Pause", self.toggle_pause, ["Space"], checkable=True)
        self.record_action = action("&Record", self.toggle_recording, ["R"], checkable=True,
                                    tip="record the annotated video to a timestamped file")
        self.record_to_action = action("Record &to…", self.choose_recording, ["Ctrl+Shift+R"])
        self.screenshot_action = action("&Screenshot", lambda: self.take_screenshot(), ["S"])
        self.pace_action = action("Play files at their own &frame rate", self.set_pacing, checkable=True,
                                  tip="off: files play as fast as the detector allows (its real throughput)")
        self.pace_action.setChecked(self.pace_files)
        self.quit_action = action("&Quit", self._escape, ["Q", "Esc"], tip="Esc: all streams again, when one is enlarged")
        for i in range(1, 10):  # 1…9 enlarge a stream from the keyboard (again: all streams)
            action(f"Enlarge stream {i}", lambda _=False, k=i - 1: self._toggle_cell(k), [str(i)])
        self.shortcuts_action = action("&Keyboard shortcuts", self.show_shortcuts, ["F1"])

        menu = self.menuBar().addMenu("&File")
        menu.addActions([self.open_file_action, self.open_images_action, self.open_camera_action,
                         self.open_url_action, self.restart_action])
        menu.addSeparator()
        menu.addAction(self.quit_action)
        menu = self.menuBar().addMenu("&Playback")
        menu.addActions([self.pause_action, self.record_action, self.record_to_action, self.screenshot_action])
        menu.addSeparator()
        menu.addAction(self.pace_action)
        self.menuBar().addMenu("&Help").addAction(self.shortcuts_action)

    def _connect(self) -> None:
        queued = Qt.ConnectionType.QueuedConnection
        self.bridge.frame_available.connect(self._show_newest_frames, queued)
        self.grid.enlarged_changed.connect(self._on_focus_changed)
        c = self.controller
        for signal, slot in ((c.opened, self._on_opened), (c.stats_ready, self._on_stats),
                             (c.finished, self._on_finished), (c.error, self.show_error),
                             (c.recording, self._on_recording), (c.paused, self._on_paused),
                             (c.knobs_applied, self._on_knobs_applied), (c.source_state, self._on_source_state)):
            signal.connect(slot, queued)
        self.events_panel.connect_feed(c.events_feed)
        self.events_panel.heat_check.toggled.connect(lambda _on: self._redraw(self.last_result))

        self.proposal_control.value_changed.connect(lambda n: self.controller.set_knob("proposals", n))
        self.threshold_control.value_changed.connect(lambda x: self.controller.set_knob("score_threshold", x))
        self.class_list.classes_changed.connect(lambda names: self.controller.set_knob("classes", names))
        self.threshold_control.value_changed.connect(lambda _x: self._refilter_shown())
        self.class_list.classes_changed.connect(lambda _names: self._refilter_shown())
        self.precision_combo.currentTextChanged.connect(lambda p: self.controller.set_knob("precision", p))
        self.target_control.target_changed.connect(lambda fps: self.controller.set_knob("target_fps", fps))
        self.pause_button.clicked.connect(lambda on: self.set_paused(on))
        self.record_button.clicked.connect(lambda _on: self.toggle_recording())
        self.screenshot_button.clicked.connect(lambda: self.take_screenshot())
        self.open_button.clicked.connect(self.choose_video)
        self.tracking = TrackingControl(self.tracking_panel, self.shape_tool, self.controller)
        self.tracking.changed.connect(self._on_tracking_changed)
        self.tracking.message.connect(lambda text: self.statusBar().showMessage(text, 5000))

    # ================================================================== sources
    def open_source(self, config: PipelineConfig) -> None:
        """Stop what is playing and play ``config``'s source (the controller opens it off the GUI thread)."""
        if config.source_kind in ("video", "images"):
            # Play like a player: every frame, at the file's own rate when pacing is on, with a short
            # queue so that a detector slower than the video does not pile up seconds of frames.
            config = config.with_(realtime=self.pace_files, queue_size=min(config.queue_size, 2))
        config = self.tracking.adopt(config)  # tracking, lines and zones carry over to every source
        self._opening(config, [stream_name(config.source_kind, config.source)], None)
        self.source_label.setText(f"opening {config.source_kind} {config.source} …")
        self.controller.open_requested.emit(config)

    def open_streams(self, streams: Sequence[Stream | tuple[str, PipelineConfig]], *, export: str | None = None,
                     overwrite: bool = False, events=None) -> None:
        """Stop what is playing and play several streams, one cell each, through one pipeline (its
        export has a ``stream`` column). ``streams``: ``Stream``s (sources open) or (name, config)
        pairs, opened by the controller. With one stream this is ``open_source`` with a name."""
        pairs = [(s.name, s.config) if isinstance(s, Stream) else tuple(s) for s in streams]
        config = self.tracking.adopt(pairs[0][1])
        self._opening(config, [name for name, _ in pairs], pairs)
        self.streams_events = events
        self.source_label.setText(f"opening {len(pairs)} streams …")
        self.controller.open_requested.emit(StreamsRun(tuple(streams), export, overwrite, events))

    def _opening(self, config: PipelineConfig, names: list[str], pairs) -> None:
        self.config, self.stream_pairs = config, pairs
        self.grid.set_names(names)
        self._on_focus_changed(self.grid.enlarged)  # (which also forgets the last result and the meters)
        self.error_banner.hide()
        if self.down:  # the countdown of a source that no longer plays
            self.warning_banner.hide()
        self.down.clear()

    def _open_chosen(self, kind: str, source: str) -> bool:
        """Play a source chosen in the window ("" = none) with the run's settings, without its outputs."""
        if not source:
            return False
        base = self.config or PipelineConfig(source_kind=kind, source=source)
        try:
            # open_source paces files again; live sources need no pacing
            config = base.with_(source_kind=kind, source=source, record=None, export=None, policy="auto",
                                realtime=False, events=for_next_source(base.events))
        except Exception as exc:
            self.show_error(one_line(exc))
            return False
        self.open_source(config)
        return True

    def _on_tracking_changed(self, state: dict) -> None:
        if self.config is not None:  # F5 and the next source keep the lines, zones and switches
            self.config = self.config.with_(**state)

    def choose_video(self) -> None:
        start = str(Path(self.config.source).parent) if self.config and self.config.source_kind == "video" else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open a video", start, VIDEO_FILTER)
        self._open_chosen("video", path)

    def choose_images(self) -> None:
        self._open_chosen("images", QFileDialog.getExistingDirectory(self, "Open a folder of images"))

    def choose_camera(self) -> None:
        index, ok = QInputDialog.getInt(self, "Open a camera", "Camera index (0 = the first camera):", 0, 0, 63)
        self._open_chosen("camera", str(index) if ok else "")

    def choose_url(self) -> None:
        url, ok = QInputDialog.getText(self, "Open a stream", "Stream URL (rtsp://…, http://…):")
        self._open_chosen("url", url.strip() if ok else "")

    def set_pacing(self, on: bool) -> None:
        """Pace files at their frame rate, or run them as fast as the detector allows; a file that
        is playing starts again with the new setting."""
        self.pace_files = bool(on)  # (the menu's check mark already says so)
        if self.config is not None and self.config.source_kind in ("video", "images"):
            self.restart()

    def restart(self) -> None:
        """Play the current source(s) again, with the window's tracking state, without the run's outputs."""
        if self.stream_pairs is not None:
            self.open_streams([(name, self.tracking.adopt(config).with_(record=None)) for name, config in self.stream_pairs],
                              events=for_next_source(self.streams_events))
        elif self.config is not None:
            self.open_source(self.config.with_(record=None, export=None, events=for_next_source(self.config.events)))

    # ================================================================== controls
    def set_paused(self, on: bool) -> None:
        self._pause_wanted = bool(on)
        self.controller.pause_requested.emit(bool(on))

    def toggle_pause(self) -> None:
        # from the last request, not the confirmed state: a second Space before the controller's
        # answer arrives toggles back instead of asking for the same state again
        self.set_paused(not self._pause_wanted)

    def toggle_recording(self) -> None:
        """R: stop the running recording, or start one under a default timestamped name — from the
        last request, as Space does: a second R before the answer stops what the first started."""
        if self._record_wanted:
            self.stop_recording()
        else:
            self.start_recording(self._recording_name())
        self._sync_record_controls()  # until the controller confirms

    def choose_recording(self) -> None:
        suggestion = str(self._recording_name())
        path, _ = QFileDialog.getSaveFileName(self, "Record to", suggestion, "MP4 video (*.mp4);;Matroska (*.mkv)")
        if path:
            if self._record_wanted:
                self.stop_recording()
            # the dialog asked about overwriting path; several streams write path-<name>, which it did not
            self.start_recording(Path(path), overwrite=len(self.grid.names) == 1)

    def _recording_name(self) -> Path:
        """A free timestamped name; with several streams, free for each one's file (name-<stream>)."""
        several = self.grid.names if len(self.grid.names) > 1 else ()
        return default_output_name(self.output_dir, "recording", ".mp4", streams=several)

    def start_recording(self, path: Path, overwrite: bool = False) -> None:
        self._record_wanted = True
        self.controller.record_requested.emit(str(path), overwrite)

    def stop_recording(self) -> None:
        self._record_wanted = False
        self.controller.stop_record_requested.emit()

    def take_screenshot(self, path: str | Path | None = None) -> Path | None:
        """Save the current frame with its boxes at the frame's own resolution (PNG)."""
        image = self.view.annotated_image()
        if image is None:
            self.show_error("no frame to save yet")
            return None
        target = Path(path) if path else default_output_name(self.output_dir, "screenshot", ".png")
        if not image.save(str(target)):
            self.show_error(f"the screenshot could not be written to {target}")
            return None
        self.last_screenshot = target
        self.statusBar().showMessage(f"screenshot saved: {target}", 5000)
        return target

    def _refilter_shown(self) -> None:
        """Apply a stricter threshold or class filter to the frames on screen now, in every cell (paused,
        or a slow frame); a looser one cannot add the boxes the detector dropped: they come with the
        next frame."""
        keep = {"min_score": self.threshold_control.value(), "classes": self.class_list.selection() or None}
        for tile in self.grid.tiles.values():
            if tile.result is not None and tile.view.image is not None:
                tile.view.set_detections(tile.result.detections.filter(**keep))

    def show_error(self, message: str) -> None:
        log.warning("%s", message)
        self.error_banner.show_message(message)

    def show_shortcuts(self) -> None:
        QMessageBox.information(
            self, "Keyboard shortcuts",
            "Space  pause / resume\nR  record on / off\nS  screenshot\nCtrl+O  open a video\n"
            "Ctrl+K  open a camera\nCtrl+U  open a stream\nF5  restart the source\n"
            "1 … 9  enlarge a stream (again: all)\nEsc  all streams, or quit\nQ  quit",
        )

    # ================================================================== the grid
    def _toggle_cell(self, index: int) -> None:
        if index < len(self.grid.names):
            self.grid.toggle(self.grid.names[index])

    def _escape(self) -> None:
        """Esc (and Q): all streams again when one of several is enlarged, else quit."""
        if self.grid.enlarged is not None and len(self.grid.names) > 1:  # (one stream looks the same)
            self.grid.enlarge(None)
        else:
            self.close()

    def _on_focus_changed(self, _name) -> None:
        """Another cell is in focus: the mouse draws lines and zones there, the panel shows its figures."""
        self.shape_tool.retarget(self.view)
        self.last_result = None
        self.meter.reset()
        self.latency.reset()
        if len(self.grid.names) > 1:
            self.statusBar().showMessage(f"{self.focus} — click it (or Esc) for all streams" if self.grid.enlarged
                                         else "click a stream to enlarge it; click again (or Esc) for all", 5000)

    # ================================================================== reports from the controller
    def _decorated(self, result):
        """The frame to show: with the heat map under the boxes when its toggle is on (one stream)."""
        return self.events_panel.decorate(result.frame.image) if len(self.grid.names) == 1 else result.frame.image

    def _redraw(self, result) -> None:
        if result is not None:  # the boxes as shown (a stricter threshold may have hidden some since)
            self.view.set_frame(rgb_to_qimage(self._decorated(result)), self.view.detections, result.overlay)

    def _show_newest_frames(self) -> None:
        """Each stream's newest result into its cell; the one in focus also feeds the panel."""
        results = self.bridge.take_all()
        if self._closed:
            return
        now = time.monotonic()
        for name, result in results.items():
            tile = self.grid.tiles.get(name)
            if tile is None:  # a stream of a run replaced since
                continue
            tile.show_result(result, self._decorated(result))
            if name == self.focus:
                self.tracking_panel.show_counts(result.overlay, self.tracking.shapes)
                self.last_result = result
                self.frames_displayed += 1
                self.meter.tick(now)
                self.latency.add(now - result.frame.captured)

    def _on_opened(self, info: dict) -> None:
        self.is_running = True
        names = info.get("names") or [info["name"]]
        if len(names) > 1:
            self.source_label.setText(f"{len(names)} streams: {', '.join(names)}")
            self.setWindowTitle(f"{len(names)} streams — Faster R-CNN live detection")
        else:
            rate = f" · {info['rate']:.3g} fps" if info.get("rate") else ""
            total = f" · {info['total_frames']} frames" if info.get("total_frames") else ""
            self.source_label.setText(f"{info['kind']}: {info['name']}{rate}{total}")
            self.setWindowTitle(f"{Path(str(info['name'])).name} — Faster R-CNN live detection")
        if info.get("notes"):
            self.statusBar().showMessage("; ".join(info["notes"]), 8000)

    def _on_finished(self, text: str) -> None:
        self.is_running = False
        self.statusBar().showMessage(text + " — F5 plays it again", 0)

    def _on_recording(self, paths: list, on: bool) -> None:
        if on:
            self.recording_paths = [Path(p) for p in paths]
            self.statusBar().showMessage(f"recording to {', '.join(paths)}", 5000)
        else:
            if self.recording_paths and [Path(p) for p in paths] == self.recording_paths:
                saved = [p for p in paths if Path(p).exists()]  # the recorder opens its file with the first frame
                self.statusBar().showMessage(f"recording saved: {', '.join(saved)}" if saved else
                                             "recording stopped before any frame arrived: no file written", 8000)
            self.recording_paths = []
        self._record_wanted = bool(self.recording_paths)
        self._sync_record_controls()

    def _sync_record_controls(self) -> None:
        on = bool(self.recording_paths)
        set_checked_quietly(on, self.record_button, self.record_action)
        self.record_button.setText("■ Stop recording" if on else "● Record")
        for tile in self.grid.tiles.values():  # every stream records
            tile.view.set_badge("recording", on)

    def _on_paused(self, on: bool) -> None:
        self.is_paused = self._pause_wanted = on
        set_checked_quietly(on, self.pause_button, self.pause_action)
        self.pause_button.setText("▶ Resume" if on else "❚❚ Pause")
        for tile in self.grid.tiles.values():  # the pause holds every stream
            tile.view.set_badge("paused", on)

    def _on_knobs_applied(self, knobs: dict) -> None:
        if "precision" in knobs:
            self.model_label.setText(model_text(self.detector))
            with QSignalBlocker(self.precision_combo):
                self.precision_combo.setCurrentText(str(knobs["precision"]))

    def _on_stats(self, run: MultiStats) -> None:
        """Every cell's caption, the run's totals, and the panel for the stream in focus."""
        if not run.streams:
            return
        self.last_run_stats = run
        for name, tile in self.grid.tiles.items():
            if name in run.streams:
                tile.set_stats(run.streams[name], run.states.get(name, ""))
        total = f"{run.fps:.1f}" if run.fps else "--"
        batch = f"{run.mean_batch:.2f}" if run.mean_batch else "--"
        ended = " · all streams ended" if run.finished else " · paused (Space resumes)" if run.paused else ""
        every = "all streams: " if len(run.streams) > 1 else ""
        self.total_label.setText(f"{every}{total} fps · mean batch {batch}{ended}")
        stats = self.last_stats = replace(run.streams.get(self.focus) or next(iter(run.streams.values())), adapt=run.adapt)
        self.target_control.show_status(stats.adapt)
        self.performance.show_stats(stats, self.bridge.replaced)
        kept = f"RPN kept {stats.proposals} on the last frame" if stats.proposals else ""
        self.proposals_seen.setText(kept)
        self._show_setup_change()
        self._show_output_failures()

    def _show_output_failures(self) -> None:
        """An output that stopped (disk full, file too large): its line in the banner, once; the
        video and the other outputs go on."""
        # the newest run, also once it ended: its last stats come after the controller let go of it
        failures = getattr(getattr(self.controller, "last_pipeline", None), "output_failures", list)()
        new = [line for line in failures if line not in self._failures_shown]
        if new:
            self._failures_shown.update(new)
            self.warning_banner.show_message("⚠ " + "\n⚠ ".join(sorted(self._failures_shown)))

    def _show_setup_change(self) -> None:
        """--precision auto measured its candidates on the first frames and switched: say so once,
        and show the precision it runs now."""
        tuner = getattr(self.detector, "tuner", None)
        line = tuner.announcement() if tuner is not None else None
        if not line:
            return
        self.statusBar().showMessage(line, 10000)
        with QSignalBlocker(self.precision_combo):
            if self.precision_combo.findText(self.detector.precision) < 0:
                self.precision_combo.addItem(self.detector.precision)
            self.precision_combo.setCurrentText(self.detector.precision)
        self.model_label.setText(model_text(self.detector))

    @property
    def source_event(self):
        """The latest event of a live source still down, or None."""
        return next(reversed(self.down.values()), None)

    def _on_source_state(self, event) -> None:
        """A live source dropped (the banner counts down to its next attempt, a line per source
        down) or is back."""
        self.down.pop(event.source, None)  # (a new event goes last: the latest)
        if event.state == "reconnected":
            self.statusBar().showMessage(event.line(), 8000)
        else:
            self.down[event.source] = event
        self._show_source_state()

    def _show_source_state(self) -> None:
        now = time.monotonic()
        if lines := [f"⚠ {e.source}: {e.status(now)} — {e.reason}" for e in self.down.values()]:
            self.warning_banner.show_message("\n".join(lines))
        else:
            self.warning_banner.hide()

    def _refresh_fps(self) -> None:
        if any(e.state != "gave_up" for e in self.down.values()):
            self._show_source_state()  # the countdown to the next attempt
        fps = self.meter.fps(time.monotonic()) or 0.0
        self.performance.show_display(fps, self.latency.mean if len(self.latency) else None)

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls() and event.mimeData().urls()[0].isLocalFile():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        path = Path(event.mimeData().urls()[0].toLocalFile())
        if self._open_chosen("images" if path.is_dir() else "video", str(path)):
            event.acceptProposedAction()

    # ================================================================== shutdown
    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.hide()  # gone at once, even while a slow detect call or the encoder flush is awaited
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self, timeout_s: float = STOP_TIMEOUT_S + 5) -> bool:
        """Stop the pipeline (finalising a recording) and the controller's thread; True when all ended."""
        if self._closed:
            return True
        self._closed = True
        self._status_timer.stop()
        self.controller.shutdown_requested.emit()
        done = self.control_thread.wait(int(timeout_s * 1000))
        if not done:
            log.warning("the pipeline did not stop within %.0f s", timeout_s)
        return done
