"""The main window: live video with detections, performance against 30/60 fps, live controls.

Threads: the GUI thread owns every widget. The pipeline's threads push results into a
``FrameBridge`` (newest frame only) and a ``PipelineController`` on its own QThread does every
blocking pipeline call; both talk to the window by queued signals. Closing the window stops the
pipeline, finalises a recording and ends the controller's thread before ``closeEvent`` returns.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PyQt6.QtCore import QSize, Qt, QTimer
from PyQt6.QtGui import QAction, QKeySequence
from PyQt6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.config import PipelineConfig
from app.gui.bridge import FrameBridge, rgb_to_qimage
from app.gui.controller import STOP_TIMEOUT_S, default_output_name, one_line, start_controller
from app.gui.events_feed import for_next_source
from app.gui.events_panel import EventsPanel
from app.gui.fps_meter import RollingMean
from app.gui.performance import PerformancePanel
from app.gui.target import TargetControl
from app.gui.tracking import ShapeTool, TrackingControl, TrackingPanel
from app.gui.video_view import VideoView
from app.gui.widgets import Banner, ClassChecklist, ProposalControl, ThresholdControl, available_precisions
from app.stats import FpsMeter, PipelineStats
from detector.detections import valid_names

log = logging.getLogger(__name__)

VIDEO_FILTER = "Videos (*.mp4 *.mkv *.mov *.m4v *.avi *.webm *.mpg *.mpeg *.ts *.flv *.wmv);;All files (*)"
PANEL_WIDTH = 330


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
        self.recording_path: Path | None = None
        self.last_screenshot: Path | None = None
        self.is_paused = False
        self.is_running = False
        self.frames_displayed = 0
        self.last_result = None
        self.last_stats: PipelineStats | None = None
        self._failures_shown: set[str] = set()  # output failures already in the banner
        self.source_event = None  # the live source's latest drop while it is down (app/io/reconnect.py)
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
        self._show_detector_state()

        self._status_timer = QTimer(self)
        self._status_timer.setInterval(200)
        self._status_timer.timeout.connect(self._refresh_fps)
        self._status_timer.start()

    # ================================================================== layout
    def _build_ui(self) -> None:
        self.view = VideoView()
        self.warning_banner = Banner("warning")
        self.error_banner = Banner("error")
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.warning_banner)
        column.addWidget(self.error_banner)
        column.addWidget(self.view, 1)
        column.addWidget(self._build_control_strip())

        panel = QWidget()
        panel.setObjectName("panel")
        side = QVBoxLayout(panel)
        side.setContentsMargins(10, 10, 10, 10)
        side.setSpacing(10)

        # --- performance (aliases: the tests and the status timer read these widgets)
        perf = self.performance = PerformancePanel()
        self.fps_gauge, self.stage_bar = perf.fps_gauge, perf.stage_bar
        self.detector_fps_label, self.latency_label = perf.pipeline_label, perf.latency_label
        self.dropped_label, self.progress_label = perf.dropped_label, perf.progress_label

        # --- detector knobs
        knobs = QGroupBox("Detector")
        form = QFormLayout(knobs)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.proposal_control = ProposalControl(self.detector.proposal_count)
        self.threshold_control = ThresholdControl(self.detector.score_threshold)
        self.precision_combo = QComboBox()
        precisions = available_precisions(self.detector.device, getattr(self.detector, "int8_available", False))
        self.precision_combo.addItems(precisions)
        if self.detector.precision not in precisions:
            self.precision_combo.addItem(self.detector.precision)
        self.precision_combo.setCurrentText(self.detector.precision)
        self.precision_combo.setToolTip(f"compute precision on {self.detector.device.type} (autocast; weights stay fp32)")
        if not hasattr(self.detector, "set_precision"):
            self.precision_combo.setEnabled(False)
        self.proposals_seen = QLabel("")
        self.proposals_seen.setObjectName("muted")
        form.addRow("Proposals", self.proposal_control)
        form.addRow("", self.proposals_seen)
        form.addRow("Score ≥", self.threshold_control)
        form.addRow("Precision", self.precision_combo)
        self.target_control = TargetControl(owns=(self.proposal_control,))  # the controller's knobs while on
        form.addRow("Target", self.target_control)

        classes = QGroupBox("Classes")
        classes_layout = QVBoxLayout(classes)
        self.class_list = ClassChecklist(valid_names(self.detector.class_names), self.detector.classes)
        classes_layout.addWidget(self.class_list)

        tracking = QGroupBox("Tracking")
        self.tracking_panel = TrackingPanel()
        QVBoxLayout(tracking).addWidget(self.tracking_panel)
        self.view.tool = ShapeTool(self.view)  # draws counting lines and zones with the mouse

        side.addWidget(perf)
        side.addWidget(knobs)
        side.addWidget(tracking)
        events = QGroupBox("Events")  # the list, the heat-map toggle and the alert outputs (issue #22)
        self.events_panel = EventsPanel()
        QVBoxLayout(events).addWidget(self.events_panel)
        side.addWidget(events)
        side.addWidget(classes, 1)

        scroll = QScrollArea()
        scroll.setWidget(panel)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFixedWidth(PANEL_WIDTH)
        scroll.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Expanding)

        root = QWidget()
        row = QHBoxLayout(root)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(central, 1)
        row.addWidget(scroll)
        self.setCentralWidget(root)

        self.source_label = QLabel("no source")
        self.model_label = QLabel(self._model_text())
        self.statusBar().addWidget(self.source_label, 1)
        self.statusBar().addPermanentWidget(self.model_label)

    def _build_control_strip(self) -> QWidget:
        """Pause / record / screenshot under the video, like a player's transport bar."""
        strip = QFrame()
        strip.setObjectName("strip")
        row = QHBoxLayout(strip)
        row.setContentsMargins(8, 6, 8, 6)
        self.open_button = QPushButton("Open…")
        self.pause_button = QPushButton("❚❚ Pause")
        self.record_button = QPushButton("● Record")
        self.record_button.setObjectName("record")
        self.screenshot_button = QPushButton("Screenshot")
        for b in (self.pause_button, self.record_button):
            b.setCheckable(True)
        self.pause_button.setToolTip("pause / resume (Space)")
        self.record_button.setToolTip("record the annotated video to a timestamped file (R)")
        self.screenshot_button.setToolTip("save the current frame with its boxes as PNG (S)")
        self.open_button.setToolTip("open a video file (Ctrl+O); cameras and streams are in the File menu")
        for b in (self.open_button, self.pause_button, self.record_button, self.screenshot_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        row.addWidget(self.open_button)
        row.addStretch(1)
        row.addWidget(self.pause_button)
        row.addWidget(self.record_button)
        row.addWidget(self.screenshot_button)
        return strip

    def _model_text(self) -> str:
        info = getattr(self.detector, "info", None)
        name = getattr(info, "name", "model")
        trained = "" if getattr(info, "trained", True) else " (untrained)"
        return f"{name}{trained} · {self.detector.device.type} · {self.detector.precision}"

    def _build_actions(self) -> None:
        def action(text: str, slot, shortcuts=(), checkable: bool = False, tip: str = "") -> QAction:
            act = QAction(text, self)
            if shortcuts:
                act.setShortcuts([QKeySequence(s) for s in shortcuts])
            act.setCheckable(checkable)
            if tip:
                act.setStatusTip(tip)
            act.triggered.connect(slot)
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
        self.quit_action = action("&Quit", self.close, ["Q", "Esc"])
        self.shortcuts_action = action("&Keyboard shortcuts", self.show_shortcuts, ["F1"])

        menu = self.menuBar().addMenu("&File")
        for act in (self.open_file_action, self.open_images_action, self.open_camera_action, self.open_url_action,
                    self.restart_action):
            menu.addAction(act)
        menu.addSeparator()
        menu.addAction(self.quit_action)
        menu = self.menuBar().addMenu("&Playback")
        for act in (self.pause_action, self.record_action, self.record_to_action, self.screenshot_action):
            menu.addAction(act)
        menu.addSeparator()
        menu.addAction(self.pace_action)
        menu = self.menuBar().addMenu("&Help")
        menu.addAction(self.shortcuts_action)

    def _connect(self) -> None:
        queued = Qt.ConnectionType.QueuedConnection
        self.bridge.frame_available.connect(self._show_newest_frame, queued)
        c = self.controller
        c.opened.connect(self._on_opened, queued)
        c.stats_ready.connect(self._on_stats, queued)
        c.finished.connect(self._on_finished, queued)
        c.error.connect(self.show_error, queued)
        c.recording.connect(self._on_recording, queued)
        c.paused.connect(self._on_paused, queued)
        c.knobs_applied.connect(self._on_knobs_applied, queued)
        c.source_state.connect(self._on_source_state, queued)
        self.events_panel.connect_feed(c.events_feed)
        self.events_panel.heat_check.toggled.connect(lambda _on: self._show_result(self.last_result))

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
        self.tracking = TrackingControl(self.tracking_panel, self.view.tool, self.controller)
        self.tracking.changed.connect(self._on_tracking_changed)
        self.tracking.message.connect(lambda text: self.statusBar().showMessage(text, 5000))

    def _show_detector_state(self) -> None:
        notes = [n for n in getattr(self.detector, "notes", []) if n]
        if notes:
            self.warning_banner.show_message("⚠ " + "\n⚠ ".join(notes))

    # ================================================================== sources
    def open_source(self, config: PipelineConfig) -> None:
        """Stop what is playing and play ``config``'s source (the controller opens it off the GUI thread)."""
        if config.source_kind in ("video", "images"):
            # Play like a player: every frame, at the file's own rate when pacing is on, and a short
            # queue so that a detector slower than the video does not pile up seconds of frames
            # between reader and detector (capture-to-display stays a couple of frame times).
            config = config.with_(realtime=self.pace_files, queue_size=min(config.queue_size, 2))
        config = self.tracking.adopt(config)  # tracking, lines and zones carry over to every source
        self.config = config
        self.error_banner.hide()
        self.source_event = None
        self.meter.reset()
        self.latency.reset()
        self.source_label.setText(f"opening {config.source_kind} {config.source} …")
        self.controller.open_requested.emit(config)

    def _menu_config(self, kind: str, source: str) -> PipelineConfig | None:
        """A config for a source chosen in the window: the run's settings without its outputs."""
        base = self.config or PipelineConfig(source_kind=kind, source=source)
        try:
            # open_source paces files again; live sources need no pacing
            return base.with_(source_kind=kind, source=source, record=None, export=None, policy="auto",
                              realtime=False, events=for_next_source(base.events))
        except Exception as exc:
            self.show_error(one_line(exc))
            return None

    def _on_tracking_changed(self, state: dict) -> None:
        if self.config is not None:  # F5 and the next source keep the lines, zones and switches
            self.config = self.config.with_(**state)

    def choose_video(self) -> None:
        start = str(Path(self.config.source).parent) if self.config and self.config.source_kind == "video" else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open a video", start, VIDEO_FILTER)
        if path and (config := self._menu_config("video", path)):
            self.open_source(config)

    def choose_images(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a folder of images")
        if path and (config := self._menu_config("images", path)):
            self.open_source(config)

    def choose_camera(self) -> None:
        index, ok = QInputDialog.getInt(self, "Open a camera", "Camera index (0 = the first camera):", 0, 0, 63)
        if ok and (config := self._menu_config("camera", str(index))):
            self.open_source(config)

    def choose_url(self) -> None:
        url, ok = QInputDialog.getText(self, "Open a stream", "Stream URL (rtsp://…, http://…):")
        if ok and url.strip() and (config := self._menu_config("url", url.strip())):
            self.open_source(config)

    def set_pacing(self, on: bool) -> None:
        """Pace files at their frame rate, or run them as fast as the detector allows; a file that
        is playing starts again with the new setting."""
        self.pace_files = bool(on)
        self.pace_action.setChecked(self.pace_files)
        if self.config is not None and self.config.source_kind in ("video", "images"):
            self.restart()

    def restart(self) -> None:
        if self.config is not None:
            self.open_source(self.config.with_(record=None, export=None, events=for_next_source(self.config.events)))

    # ================================================================== controls
    def set_paused(self, on: bool) -> None:
        self.controller.pause_requested.emit(bool(on))

    def toggle_pause(self) -> None:
        self.set_paused(not self.is_paused)

    def toggle_recording(self) -> None:
        """R: stop the running recording, or start one under a default timestamped name."""
        if self.recording_path is not None:
            self.controller.stop_record_requested.emit()
        else:
            self.start_recording(default_output_name(self.output_dir, "recording", ".mp4"))
        self._sync_record_controls()  # until the controller confirms

    def choose_recording(self) -> None:
        suggestion = str(default_output_name(self.output_dir, "recording", ".mp4"))
        path, _ = QFileDialog.getSaveFileName(self, "Record to", suggestion, "MP4 video (*.mp4);;Matroska (*.mkv)")
        if path:
            if self.recording_path is not None:
                self.controller.stop_record_requested.emit()
            self.start_recording(Path(path), overwrite=True)  # the dialog asked about overwriting

    def start_recording(self, path: Path, overwrite: bool = False) -> None:
        self.controller.record_requested.emit(str(path), overwrite)

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
        """Apply a stricter threshold or class filter to the frame on screen at once.

        The detector applies the knobs from the next frame on; when paused, or when a frame takes
        seconds, the shown boxes follow the controls now. (A looser setting cannot add boxes the
        detector did not return; those come with the next frame.)
        """
        if self.last_result is None or self.view.image is None:
            return
        shown = self.last_result.detections.filter(min_score=self.threshold_control.value(),
                                                   classes=self.class_list.selection() or None)
        self.view.set_detections(shown)

    def show_error(self, message: str) -> None:
        log.warning("%s", message)
        self.error_banner.show_message(message)

    def show_shortcuts(self) -> None:
        QMessageBox.information(
            self, "Keyboard shortcuts",
            "Space  pause / resume\nR  record on / off\nS  screenshot\nCtrl+O  open a video\n"
            "Ctrl+K  open a camera\nCtrl+U  open a stream\nF5  restart the source\nQ, Esc  quit",
        )

    # ================================================================== reports from the controller
    def _show_result(self, result) -> None:
        if result is not None:  # (with the heat map under the boxes when its toggle is on)
            self.view.set_frame(rgb_to_qimage(self.events_panel.decorate(result.frame.image)), result.detections,
                                result.overlay)

    def _show_newest_frame(self) -> None:
        result = self.bridge.take()
        if result is None or self._closed:
            return
        now = time.monotonic()
        self._show_result(result)
        self.tracking_panel.show_counts(result.overlay, self.tracking.shapes)
        self.last_result = result
        self.frames_displayed += 1
        self.meter.tick(now)
        self.latency.add(now - result.frame.captured)

    def _on_opened(self, info: dict) -> None:
        self.is_running = True
        rate = f" · {info['rate']:.3g} fps" if info.get("rate") else ""
        total = f" · {info['total_frames']} frames" if info.get("total_frames") else ""
        self.source_label.setText(f"{info['kind']}: {info['name']}{rate}{total}")
        self.setWindowTitle(f"{Path(str(info['name'])).name} — Faster R-CNN live detection")
        if info.get("notes"):
            self.statusBar().showMessage("; ".join(info["notes"]), 8000)

    def _on_finished(self, text: str) -> None:
        self.is_running = False
        self.statusBar().showMessage(text + " — F5 plays it again", 0)

    def _on_recording(self, path: str, on: bool) -> None:
        if on:
            self.recording_path = Path(path)
            self.statusBar().showMessage(f"recording to {path}", 5000)
        else:
            if self.recording_path is not None and Path(path) == self.recording_path:
                saved = Path(path).exists()  # the recorder opens its file with the first frame
                self.statusBar().showMessage(f"recording saved: {path}" if saved else
                                             "recording stopped before any frame arrived: no file written", 8000)
            self.recording_path = None
        self._sync_record_controls()

    def _sync_record_controls(self) -> None:
        on = self.recording_path is not None
        for widget in (self.record_button, self.record_action):
            widget.blockSignals(True)
            widget.setChecked(on)
            widget.blockSignals(False)
        self.record_button.setText("■ Stop recording" if on else "● Record")
        self.view.set_recording(on)

    def _on_paused(self, on: bool) -> None:
        self.is_paused = on
        for widget in (self.pause_button, self.pause_action):
            widget.blockSignals(True)
            widget.setChecked(on)
            widget.blockSignals(False)
        self.pause_button.setText("▶ Resume" if on else "❚❚ Pause")
        self.view.set_paused(on)

    def _on_knobs_applied(self, knobs: dict) -> None:
        if "precision" in knobs:
            self.model_label.setText(self._model_text())
            self.precision_combo.blockSignals(True)
            self.precision_combo.setCurrentText(str(knobs["precision"]))
            self.precision_combo.blockSignals(False)

    def _on_stats(self, stats: PipelineStats) -> None:
        self.last_stats = stats
        self.target_control.show_status(stats.adapt)
        self.performance.show_stats(stats, self.bridge.replaced)
        if stats.proposals:
            self.proposals_seen.setText(f"RPN kept {stats.proposals} on the last frame")
        self._show_setup_change()
        self._show_output_failures()

    def _show_output_failures(self) -> None:
        """An output that stopped (disk full, file too large): its line in the banner, once; the
        video and the other outputs go on."""
        pipeline = getattr(self.controller, "pipeline", None)
        failures = pipeline.output_failures() if pipeline is not None and hasattr(pipeline, "output_failures") else []
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
        self.precision_combo.blockSignals(True)
        if self.precision_combo.findText(self.detector.precision) < 0:
            self.precision_combo.addItem(self.detector.precision)
        self.precision_combo.setCurrentText(self.detector.precision)
        self.precision_combo.blockSignals(False)

    def _on_source_state(self, event) -> None:
        """A live source dropped (the banner counts down to the next attempt) or is back."""
        self.source_event = None if event.state == "reconnected" else event
        if self.source_event is None:
            self.warning_banner.hide()
            self.statusBar().showMessage(event.line(), 8000)
        else:
            self._show_source_state()

    def _show_source_state(self) -> None:
        e = self.source_event
        self.warning_banner.show_message(f"⚠ {e.source}: {e.status(time.monotonic())} — {e.reason}")

    def _refresh_fps(self) -> None:
        now = time.monotonic()
        if self.source_event is not None and self.source_event.state != "gave_up":
            self._show_source_state()  # the countdown to the next attempt
        self.performance.show_display(self.meter.fps(now) or 0.0, self.latency.mean if len(self.latency) else None)

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls() and event.mimeData().urls()[0].isLocalFile():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        path = Path(event.mimeData().urls()[0].toLocalFile())
        config = self._menu_config("images" if path.is_dir() else "video", str(path))
        if config is not None:
            self.open_source(config)
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

    def sizeHint(self) -> QSize:
        return QSize(1180, 720)
