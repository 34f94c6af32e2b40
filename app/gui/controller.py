"""The one object that drives the pipeline for the window, on its own QThread.

Everything that can block — opening a camera or URL (seconds), stopping a pipeline (waits for a
``detect`` call), finalising a recording (flushes the encoder), even a knob change (the detector's
lock is held for a whole ``detect``) — happens here, never on the GUI thread; the window never holds
the pipeline and talks to it by queued signals only (Qt's worker-object pattern). Frames take a
faster path: the sink threads push each result into the ``FrameBridge`` (the newest one only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PyQt6.QtCore import QObject, Qt, QThread, QTimer, pyqtSignal, pyqtSlot

from app.analytics.count import Shape
from app.config import PipelineConfig
from app.errors import UserError, one_line
from app.gui.bridge import FrameBridge
from app.gui.events_feed import EventFeed
from app.io.paths import first_free, per_stream_path
from app.io.reconnect import open_source
from app.pipeline.pipeline import Pipeline, Stream
from app.pipeline.sinks import CallbackSink

log = logging.getLogger(__name__)

STATS_INTERVAL_MS = 250
STOP_TIMEOUT_S = 30.0  # a stop waits for a running detect call (seconds on a CPU) and the encoder flush


@dataclass(frozen=True)
class StreamsRun:
    """Several streams to run in the window: each a ``Stream`` (source open) or a (name, config) pair
    (opened by the controller); the run's export file (a ``stream`` column) and events settings."""

    streams: tuple
    export: str | None = None
    overwrite: bool = False
    events: object = None


class PipelineController(QObject):
    """Owns the detector's knobs and the running pipeline; lives on ``thread``.

    Requests (emit from the GUI thread; they run on the controller's thread, in order):
        open_requested(PipelineConfig | StreamsRun): one source, or several streams; pause_requested(bool),
        record_requested(str path, bool overwrite), stop_record_requested(), shutdown_requested().
    Knobs: ``set_knob(name, value)`` from any thread — only the newest value of each knob is applied.

    Reports (to the GUI thread, queued):
        opened(dict): the sources started — names (one per stream), and the first one's name, kind,
            rate, total_frames; notes.
        stats_ready(MultiStats): a snapshot of every stream, 4 × a second while a pipeline runs, and its
            last when it ends by itself (not when stopped for another source).
        finished(str): the run ended by itself; the text says how ("end of …: N frames", or an error).
        error(str): one line to show; the window stays usable.
        recording(list, bool): (paths, on) — recordings started (one per stream), or were finalised.
        paused(bool), knobs_applied(dict).
        source_state(SourceEvent): a live source dropped, is being reopened, or is back (app/io/reconnect.py).
    """

    open_requested = pyqtSignal(object)
    pause_requested = pyqtSignal(bool)
    record_requested = pyqtSignal(str, bool)
    stop_record_requested = pyqtSignal()
    shutdown_requested = pyqtSignal()

    opened = pyqtSignal(dict)
    stats_ready = pyqtSignal(object)
    finished = pyqtSignal(str)
    error = pyqtSignal(str)
    recording = pyqtSignal(list, bool)
    paused = pyqtSignal(bool)
    knobs_applied = pyqtSignal(dict)
    source_state = pyqtSignal(object)

    _pipeline_done = pyqtSignal(int, object)

    KNOBS = ("proposals", "score_threshold", "classes", "precision", "target_fps", "track", "trails", "counters")
    # Applied to the running pipeline's tracking stage; the window keeps them in its config too, so
    # that the next source it opens starts with them.
    ANALYTICS_KNOBS = ("track", "trails", "counters")

    def __init__(self, detector, bridge: FrameBridge) -> None:
        super().__init__()
        self.detector = detector
        self.bridge = bridge
        self.pipeline: Pipeline | None = None
        self.last_pipeline: Pipeline | None = None  # the newest one started, kept after it ended (its errors, lanes)
        self.events_feed = EventFeed()  # the events, heat map and alert counters, for the window (by signals)
        self.target_fps: float | None = None  # the adaptive controller's target, kept across sources
        self._target_chosen = False  # set by the window's selector: then it beats the sources' --target-fps
        self._generation = 0
        self._paused = False
        self._knobs = FrameBridge(self)  # the newest value of each knob, one queued call at most
        self._timer: QTimer | None = None
        for signal, slot in ((self.open_requested, self._open), (self.pause_requested, self._pause),
                             (self.record_requested, self._start_recording),
                             (self.stop_record_requested, self._stop_recording),
                             (self.shutdown_requested, self._shutdown),
                             (self._knobs.frame_available, self._apply_knobs),
                             (self._pipeline_done, self._on_pipeline_done)):
            signal.connect(slot, Qt.ConnectionType.QueuedConnection)

    # ------------------------------------------------------------------ any thread
    def set_knob(self, name: str, value) -> None:
        """Ask for a knob change; coalesced, so a dragged slider never builds a backlog."""
        if name not in self.KNOBS:
            raise ValueError(f"knob {name!r} is unknown; expected one of {', '.join(self.KNOBS)}")
        self._knobs.push(value, name)

    # ------------------------------------------------------------------ controller thread
    @pyqtSlot()
    def _apply_knobs(self) -> None:
        applied: dict[str, object] = {}
        for name, value in self._knobs.take_all().items():
            try:
                if name == "proposals":
                    self.detector.set_proposal_count(int(value))
                elif name == "score_threshold":
                    self.detector.set_score_threshold(float(value))
                elif name == "classes":
                    self.detector.set_classes(tuple(value))
                elif name == "target_fps":
                    self.target_fps = None if value is None else float(value)
                    self._target_chosen = True
                    if self.pipeline is not None:
                        self.pipeline.adapt.set_target(self.target_fps)
                elif name == "precision":
                    note = self.detector.set_precision(str(value))
                    if note:
                        self.error.emit(note)
                    value = self.detector.precision
                elif name in self.ANALYTICS_KNOBS and self.pipeline is not None:
                    for lane in self.pipeline.lanes:  # every cell tracks and counts alike
                        apply_analytics(lane.analytics, name, value)
                applied[name] = value
            except Exception as exc:  # a refused value is shown; the other knobs still apply
                self.error.emit(f"{name}: {one_line(exc)}")
                if name == "precision":  # the selector goes back to the precision that runs
                    applied[name] = self.detector.precision
        if applied:
            self.knobs_applied.emit(applied)

    @pyqtSlot(object)
    def _open(self, request: PipelineConfig | StreamsRun) -> None:
        """One source (a pipeline of one lane whose events feed the window's list) or several streams
        (one pipeline of N lanes; the run's export and events are the pipeline's own)."""
        self._stop_pipeline()
        self._generation += 1
        generation = self._generation
        on_finish = lambda err, g=generation: self._pipeline_done.emit(g, err)  # noqa: E731
        opened: list[Stream] = []
        events = request.events
        try:
            if isinstance(request, StreamsRun):
                for s in request.streams:  # a restart gives (name, config) pairs: their sources are opened here
                    opened.append(s if isinstance(s, Stream) else Stream(s[0], s[1], open_source(s[1])))
                config = opened[0].config
                pipeline = Pipeline.of_streams(opened, self.detector, export=request.export, events=events,
                                               overwrite=request.overwrite, on_finish=on_finish)
            else:
                config = request
                opened.append(Stream("", config, open_source(config)))
                pipeline = Pipeline(config, self.detector, opened[0].source, on_finish=on_finish)
            self.events_feed.attach(pipeline, events)  # before start: no event is missed
            for lane in pipeline.lanes:  # each stream's newest result, for its cell of the grid
                lane.add_sink(CallbackSink(lambda result, _a, name=lane.name: self.bridge.push(result, name),
                                           needs_image=False))
            if not self._target_chosen:  # the source's own (--target-fps), which the pipeline starts with
                self.target_fps = config.target_fps
            elif self.target_fps != config.target_fps:  # the window's choice goes on, "off" included
                pipeline.adapt.set_target(self.target_fps)
            if self._paused:
                pipeline.pause()
            pipeline.start()
        except Exception as exc:
            for stream in opened:
                stream.source.close()
            self.error.emit(one_line(exc))
            return
        self.pipeline = self.last_pipeline = pipeline
        for lane in pipeline.lanes:
            if hasattr(lane.source, "add_listener"):  # a live source that reconnects: forward its changes
                lane.source.add_listener(lambda event, g=generation: self._forward_source_state(g, event))
        source = pipeline.source
        self.opened.emit({
            "name": source.name or config.source,
            "names": [lane.name for lane in pipeline.lanes],
            "kind": config.source_kind,
            "rate": float(source.rate) if source.rate else None,
            "total_frames": source.total_frames,
            "notes": [note for lane in pipeline.lanes for note in getattr(lane.source, "notes", [])],
        })
        if sinks := pipeline.record_sinks():
            self.recording.emit([str(sink.path) for sink in sinks], True)
        self._ensure_timer()
        self._emit_stats()

    def _forward_source_state(self, generation: int, event) -> None:
        """On the reading thread: pass the change on, unless it is about a source replaced since."""
        if generation == self._generation:
            self.source_state.emit(event)

    def _stop_pipeline(self) -> None:
        if self.pipeline is not None:
            self._generation += 1  # its finish report is stale from now on
            self._end(None)

    @pyqtSlot(int, object)
    def _on_pipeline_done(self, generation: int, error: object) -> None:
        """The pipeline reached its end (or failed) by itself."""
        if generation == self._generation and self.pipeline is not None:
            stats, error = self._end(error)
            self.stats_ready.emit(stats)  # (not for a run stopped for another: the window has moved on)
            lanes = self.last_pipeline.lanes
            what = f"all {len(lanes)} streams" if len(lanes) > 1 else lanes[0].source.name or "source"
            self.finished.emit(f"stopped by an error after {stats.frames_written} frames" if error is not None else
                               f"end of {what}: {stats.frames_written} frames")

    def _end(self, error: BaseException | None):
        """Stop the running pipeline (joins its threads, finalises its outputs) and report its error
        and its recording finalised. Returns (its last stats, error)."""
        pipeline, self.pipeline = self.pipeline, None
        recording = [str(sink.path) for sink in pipeline.record_sinks()]
        try:
            pipeline.stop(timeout=STOP_TIMEOUT_S)
        except Exception as exc:
            error = error or exc
        self.events_feed.send_outputs()  # the alert outputs' last counters, after they drained
        error = error or pipeline.error
        if error is not None:
            self.error.emit(one_line(error))
        if recording:
            self.recording.emit(recording, False)
        return pipeline.run_stats(), error

    @pyqtSlot(bool)
    def _pause(self, on: bool) -> None:
        self._paused = bool(on)
        if self.pipeline is not None:
            self.pipeline.pause() if on else self.pipeline.resume()
        self.paused.emit(self._paused)

    @pyqtSlot(str, bool)
    def _start_recording(self, path: str, overwrite: bool) -> None:
        try:
            if self.pipeline is None or self.pipeline.finished:
                raise UserError("nothing is playing: open a video, camera or stream before recording")
            sinks = self.pipeline.start_recording(path, overwrite=overwrite)
        except Exception as exc:
            self.error.emit(one_line(exc))
            self.recording.emit([path], False)
            return
        self.recording.emit([str(sink.path) for sink in sinks], True)

    @pyqtSlot()
    def _stop_recording(self) -> None:
        if self.pipeline is None:
            return
        try:
            paths = self.pipeline.stop_recording()
        except Exception as exc:
            self.error.emit(f"the recording could not be finalised: {one_line(exc)}")
            return
        if paths:
            self.recording.emit([str(path) for path in paths], False)

    @pyqtSlot()
    def _shutdown(self) -> None:
        """Stop the pipeline (finalising a recording), then end this thread's event loop."""
        if self._timer is not None:
            self._timer.stop()
        self._stop_pipeline()
        QThread.currentThread().quit()

    def _ensure_timer(self) -> None:
        if self._timer is None:  # created here so that it lives on this thread
            self._timer = QTimer(self, interval=STATS_INTERVAL_MS, timeout=self._emit_stats)
        self._timer.start()

    @pyqtSlot()
    def _emit_stats(self) -> None:
        if self.pipeline is not None:
            self.stats_ready.emit(self.pipeline.run_stats())


def apply_analytics(analytics, name: str, value) -> None:
    """Set the tracking knob ``name`` ("track", "trails", or "counters" = (lines, zones)) on a
    pipeline's ``app.analytics.analytics.Analytics``."""
    if name == "track":
        analytics.set_tracking(bool(value))
    elif name == "trails":
        analytics.set_trails(bool(value))
    else:
        lines, zones = value
        analytics.set_shapes([Shape("line", tuple(c)) for c in lines], [Shape("zone", tuple(c)) for c in zones])


def start_controller(detector, bridge: FrameBridge) -> tuple[PipelineController, QThread]:
    """A controller on a new, started QThread named ``gui-control``."""
    thread = QThread()
    thread.setObjectName("gui-control")
    controller = PipelineController(detector, bridge)
    controller.moveToThread(thread)
    thread.start()
    return controller, thread


def default_output_name(folder: Path, stem: str, suffix: str, now: float | None = None,
                        streams: Sequence[str] = ()) -> Path:
    """``folder/stem-YYYYmmdd-HHMMSS.suffix``, with -2, -3… when that name is taken — or, for several
    ``streams`` (each written to ``per_stream_path``), when one of theirs is."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))

    def taken(name: str) -> bool:
        path = str(folder / f"{name}{suffix}")
        return any(Path(p).exists() for p in (path, *(per_stream_path(path, s) for s in streams)))

    return folder / (first_free(f"{stem}-{stamp}", taken) + suffix)
