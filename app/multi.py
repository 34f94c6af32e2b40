"""Many streams in one process with one detector: per-stream lanes around one batching scheduler.

```
stream 1: source ─► reader ─► [queue | LatestFrame] ─┐                          ┌─► [results] ─► sinks thread ─► its recording, its export rows, window
stream 2: source ─► reader ─► [queue | LatestFrame] ─┼─► scheduler: one batch ──┼─► [results] ─► sinks thread ─► ...
stream N: ...                                        ┘   detector.detect(list)  └─► ...
```

The scheduler takes, without waiting for any stream, the **newest waiting frame of each live
stream** and the **next frame of each file** (one frame per stream per batch, streams taken in
turns so that a cap on the batch is fair), runs them through ``Detector.detect`` as **one batch**
(frames of different sizes are fine) and hands each result back to its stream. A stream with
nothing waiting — a camera that is down, a slow decoder — or whose results queue is full — a slow
encoder — is simply left out of the batch: it never stalls the others. Files keep every frame
(frames in = frames out); live streams keep their latest-frame policy and, with ``reconnect`` on,
their reconnection (app/reconnect.py). A stream whose source fails ends alone; its error is
reported at the end. Only a failure of the detector or of a sink stops the run.

Every thread checks one stop event and every blocking call has a 50 ms timeout; ``stop()``
joins within about a second and finalises every recording and the export.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from app.adapt import AdaptConfig, AdaptiveController
from app.config import MAX_STREAMS, PipelineConfig, check_output_path, per_stream_path
from app.errors import first_line
from app.export import Exporter
from app.frames import Result
from app.lane import END, POLL_S, Lane
from app.render import DEFAULT_STYLE, Style
from app.sinks import CallbackSink, output_failures
from app.sources import Source
from app.stats import FpsMeter, PipelineStats
from app.threads import join_within
from detector.detector import StageTimes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stream:
    """One stream to run: a unique ``name`` (in file names and the export's ``stream`` column), its
    ``config`` (source, policy, its own ``record`` path; ``export`` is the run's) and its opened source."""

    name: str
    config: PipelineConfig
    source: Source


@dataclass(frozen=True)
class MultiStats:
    """A snapshot of a multi-stream run.

    Attributes:
        streams: each stream's ``PipelineStats``, in the run's order.
        states: each stream's state: "running", "reconnecting (attempt k, next in s)", "ended",
            "failed: <reason>".
        fps: results per second of all streams together (sliding window).
        mean_fps: the same since the first frame.
        batches: ``detect`` calls so far; batch_sizes: how many calls had each size.
        elapsed_s, finished.
    """

    streams: dict[str, PipelineStats] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    fps: float | None = None
    mean_fps: float | None = None
    batches: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    finished: bool = False
    paused: bool = False
    adapt: object | None = None  # app.adapt.AdaptStatus while --target-fps steers the shared detector

    @property
    def mean_batch(self) -> float | None:
        return sum(k * v for k, v in self.batch_sizes.items()) / self.batches if self.batches else None

    @property
    def frames_written(self) -> int:
        return sum(s.frames_written for s in self.streams.values())

    def summary(self) -> str:
        """Lines for the end of a headless run: one per stream, then the totals."""
        lines = []
        for name, s in self.streams.items():
            fps = f"{s.mean_fps:.2f} fps" if s.mean_fps else "-- fps"
            latency = f"{s.mean_latency_ms:.0f} ms" if s.mean_latency_ms is not None else "--"
            state = self.states.get(name, "")
            lines.append(f"{name}: {s.frames_read} read, {s.frames_processed} processed, {s.frames_written} written, "
                         f"{s.frames_dropped} dropped, {s.bad_frames} bad; {fps}, latency {latency}, proposals {s.proposals}"
                         + (f" ({state})" if state and state != "ended" else ""))
        total = f"{self.mean_fps:.2f}" if self.mean_fps else "--"
        sizes = ", ".join(f"{k}×{v}" for k, v in sorted(self.batch_sizes.items())) or "--"
        mean = f"{self.mean_batch:.2f}" if self.mean_batch else "--"
        lines.append(f"all {len(self.streams)} streams: {self.frames_written} frames, {total} fps together over "
                     f"{self.elapsed_s:.1f} s; {self.batches} batches, mean size {mean} (size×count: {sizes})")
        if self.adapt is not None:
            a = self.adapt
            target = f"{a.target_fps:g} fps per stream" if a.target_fps else "off"
            lines.append(f"adaptive: target {target} → {a.setting.describe()} ({a.state}: {a.reason}); {a.changes} change(s)")
        return "\n".join(lines)


class _Doorbell:
    """Wakes the scheduler when a frame or room for a result appears (instead of polling)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def ring(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def wait(self, timeout: float) -> None:
        self._event.wait(timeout)


class _StreamRows:
    """A stream's rows in the run's one export file (shared, so written under a lock; closed by the run)."""

    needs_image = False

    def __init__(self, exporter: Exporter, name: str, lock: threading.Lock) -> None:
        self.exporter, self.name, self.lock = exporter, name, lock

    def write(self, result: Result, annotated: np.ndarray | None) -> None:
        with self.lock:
            self.exporter.write(result, stream=self.name)

    def close(self) -> None:
        pass


class MultiPipeline:
    """Runs one detector over many streams, batching their frames.

    Args:
        streams: the streams (at most ``MAX_STREAMS``, unique names), sources already opened.
        detector: a ``detector.Detector`` (or anything with its ``detect``).
        export: one detections file for all streams, with a ``stream`` column; None = none. A stream
            with lines or zones writes its counts beside it (``counts_file``).
        overwrite: replace existing outputs (recordings and export).
        batch_size: most frames per ``detect`` call; 0 = one per stream.
        on_result: ``fn(stream_name, result, annotated)`` on that stream's sink thread.
        on_finish: ``fn(error_or_None)`` once, when no more results will come.
        events: what to do with events (``app.events.EventsConfig``): one events file and one set of
            publishers for the run, each stream's own event sink, clips and heat map
            (``--heatmap h.png`` → ``h-<stream>.png``); every event names its stream.
    """

    def __init__(self, streams: Sequence[Stream], detector, *, export: str | None = None, overwrite: bool = False,
                 batch_size: int = 0, on_result: Callable[[str, Result, np.ndarray | None], None] | None = None,
                 on_finish: Callable[[BaseException | None], None] | None = None, style: Style = DEFAULT_STYLE,
                 events=None) -> None:
        names = [s.name for s in streams]
        if not streams:
            raise ValueError("no streams given")
        if len(streams) > MAX_STREAMS:
            raise ValueError(f"{len(streams)} streams given; at most {MAX_STREAMS} run in one process")
        if len(set(names)) != len(names):
            raise ValueError(f"stream names must be unique; got {names}")
        self.detector = detector
        self.export = export
        self.overwrite = overwrite
        self.batch_size = batch_size or len(streams)
        self.on_finish = on_finish
        self._stop = threading.Event()
        self._doorbell = _Doorbell()
        self.lanes = [Lane(s.name, s.config, s.source, ring=self._doorbell.ring, style=style) for s in streams]
        if on_result is not None:
            for lane in self.lanes:
                lane.add_sink(CallbackSink(lambda r, a, name=lane.name: on_result(name, r, a)))
        self.exporter: Exporter | None = None
        self._export_lock = threading.Lock()
        self.events_config = events
        self.events = None  # app.events.Events, built at start
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._finished = threading.Event()
        self._finish_called = False
        self._fps = FpsMeter(max(s.config.fps_window_s for s in streams))
        self._fps_lock = threading.Lock()
        self._batch_sizes: Counter[int] = Counter()
        self._started_at: float | None = None
        self._resume = threading.Event()
        self._resume.set()
        # One controller steers the shared detector (input size, proposals) to hold the target rate
        # of every stream (one frame per stream per batch); for live streams it may also skip frames.
        first = streams[0].config
        rates = [float(s.source.rate) for s in streams if s.source.rate]
        self.adapt = AdaptiveController(detector, AdaptConfig(
            target_fps=first.target_fps, live=all(lane.live for lane in self.lanes), source_fps=min(rates) if rates else None))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> MultiPipeline:
        """Open every output (recordings, the export) and start the threads. Returns self."""
        if self._threads:
            raise RuntimeError("the run was already started; build a new one to run again")
        try:
            for lane in self.lanes:
                lane.open_outputs(counts_file(self.export, lane.name) if self.export else None)
            if self.export:
                check_output_path(self.export, "export", overwrite=self.overwrite)
                self.exporter = Exporter(self.export, extra_columns=("stream",))
                for lane in self.lanes:
                    lane.add_sink(_StreamRows(self.exporter, lane.name, self._export_lock))
            if self.events_config is not None:
                self._attach_events(self.events_config)
        except BaseException:
            self._close_outputs()
            for lane in self.lanes:
                lane.source.close()
            raise
        for lane in self.lanes:
            lane.add_sink(CallbackSink(self._count, needs_image=False))
        self._started_at = time.monotonic()
        for lane in self.lanes:
            lane.start(self._stop, self._guard)
            self._threads.extend(lane.threads)
        scheduler = threading.Thread(target=self._guard, args=(self._schedule,), name="streams-scheduler", daemon=True)
        self._threads.append(scheduler)
        watcher = threading.Thread(target=self._watch_end, name="streams-end", daemon=True)
        self._threads.append(watcher)
        scheduler.start()
        watcher.start()
        return self

    def _attach_events(self, config) -> None:
        from app.events import Events

        self.events = Events(config, overwrite=self.overwrite)
        for lane in self.lanes:
            if config.needs_tracking:
                lane.analytics.set_tracking(True)
            heatmap = per_stream_path(config.heatmap, lane.name) if config.heatmap else None
            for sink in self.events.sinks_for(lane.name, lane.analytics, lane.source, heatmap_path=heatmap):
                lane.add_sink(sink)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every stream has ended or ``timeout`` s pass; True when ended. Re-raises a
        failure of the detector or a sink (a stream's own source failure is in ``errors()``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._finished.is_set():
            left = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if left <= 0:
                break
            self._finished.wait(left)  # short waits: Ctrl-C reaches the main thread promptly
        if self._error is not None:
            raise self._error
        return self._finished.is_set()

    def run(self) -> MultiStats:
        try:
            if not self._threads:
                self.start()
            self.wait()
        finally:
            self.stop()
        return self.stats()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop every thread (joined within ``timeout`` s in all), finalise every recording and the
        export, close the sources. Safe to call twice."""
        self._stop.set()
        for lane in self.lanes:
            lane.close_input()
            if getattr(lane.source, "thread_safe_close", False):
                lane.source.close()  # wakes a reader waiting on a live source that is down
        join_within(self._threads, timeout)
        self._close_outputs()
        for lane in self.lanes:
            if not any(t.is_alive() for t in lane.threads if t.name.endswith("-reader")):
                lane.source.close()  # the reader owns its source while it runs
        self._finish()

    close = stop

    def __enter__(self) -> MultiPipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def error(self) -> BaseException | None:
        return self._error

    def errors(self) -> dict[str, BaseException]:
        """The streams whose source failed (they ended early; the others went on)."""
        return {lane.name: lane.error for lane in self.lanes if lane.error is not None}

    def output_failures(self) -> list[str]:
        """One line per output that stopped early (disk full, file too large); the others went on."""
        return output_failures([*(lane.record_sink for lane in self.lanes), self.exporter,
                                *(lane.counts_sink for lane in self.lanes)])

    # ------------------------------------------------------------------ live controls
    def pause(self) -> None:
        """Stop detecting until ``resume()``: files wait where they are, live streams keep only
        their newest frame."""
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()
        self._doorbell.ring()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    def set_target_fps(self, fps: float | None) -> None:
        """Hold ``fps`` per stream from the next batch on (None = off)."""
        self.adapt.set_target(fps)

    # ------------------------------------------------------------------ stats
    def stats(self) -> MultiStats:
        finished = self._finished.is_set()
        now = time.monotonic()
        streams = {lane.name: lane.stats(finished or lane.finished.is_set()) for lane in self.lanes}
        firsts = [lane.first_frame_at for lane in self.lanes if lane.first_frame_at is not None]
        lasts = [lane.last_result_at for lane in self.lanes if lane.last_result_at is not None]
        written = sum(s.frames_written for s in streams.values())
        end = max(lasts) if finished and lasts else now
        mean_fps = written / (end - min(firsts)) if firsts and written and end > min(firsts) else None
        with self._fps_lock:
            fps = self._fps.fps(None if finished else now)
            sizes = dict(self._batch_sizes)
        adapt = self.adapt.status()
        return MultiStats(streams=streams, states={lane.name: self._state(lane) for lane in self.lanes}, fps=fps,
                          mean_fps=mean_fps, batches=sum(sizes.values()), batch_sizes=sizes,
                          elapsed_s=(end if finished else now) - (self._started_at or now), finished=finished,
                          paused=self.paused, adapt=adapt if adapt.target_fps is not None or adapt.changes else None)

    @staticmethod
    def _state(lane: Lane) -> str:
        if lane.error is not None:
            return f"failed: {first_line(lane.error)}"
        if lane.finished.is_set():
            return "ended"
        event = getattr(lane.source, "last_event", None)
        if event is not None and getattr(lane.source, "down", False):
            return event.status(time.monotonic())
        return "running"

    def _count(self, result: Result, annotated) -> None:
        with self._fps_lock:
            self._fps.tick(time.monotonic())

    # ------------------------------------------------------------------ the scheduler
    def _schedule(self) -> None:
        turn = 0
        lanes = self.lanes
        idle = 0.0  # time spent waiting for frames since the last batch (not the detector's cost)
        while not self._stop.is_set():
            if not self._resume.is_set():
                self._resume.wait(POLL_S)
                continue
            self._doorbell.clear()  # before looking: a frame arriving after this rings again
            batch: list[tuple[Lane, object]] = []
            for k in range(len(lanes)):
                lane = lanes[(turn + k) % len(lanes)]
                if not lane.can_take():
                    continue
                item = lane.take()
                if item is END:
                    lane.input_done = True
                    lane.put_result(END)
                elif item is not None:
                    batch.append((lane, item))
                    if len(batch) == self.batch_size:
                        break
            turn = (turn + 1) % len(lanes)
            if not batch:
                if all(lane.input_done for lane in lanes):
                    return
                waited = time.monotonic()
                self._doorbell.wait(POLL_S)
                idle += time.monotonic() - waited
                continue
            if not self.adapt.detect_next():
                # Frame skip (all streams live, set by the controller): each shows its last
                # detections again; a file never gets here, every one of its frames is detected.
                now, kept = time.monotonic(), []
                for lane, frame in batch:
                    if lane.last is None:
                        kept.append((lane, frame))
                    else:
                        lane.put_result(replace(lane.last, frame=frame, done=now, detected=False))
                batch = kept
                if not batch:
                    continue
            self._detect(batch, idle)
            idle = 0.0

    def _detect(self, batch: list[tuple[Lane, object]], idle_s: float = 0.0) -> None:
        frames = [frame for _, frame in batch]
        detections = self.detector.detect([f.image for f in frames])
        done = time.monotonic()
        if self._stop.is_set():
            return  # stopped while detecting: the streams' sinks are closed, nobody takes these
        n = len(batch)
        times = self.detector.last_times
        per_frame = StageTimes(**{k: v / n for k, v in times.as_dict().items() if k != "total"})
        # Each stream gets one frame of a batch: a batch's whole cost is one frame's time of every stream.
        self.adapt.observe(done, {k: v for k, v in times.as_dict().items() if k != "total"}, shown=1, detected=1,
                           idle_s=idle_s)
        counts = list(getattr(self.detector, "last_proposal_counts", []) or [])
        with self._fps_lock:
            self._batch_sizes[n] += 1
        for i, ((lane, frame), det) in enumerate(zip(batch, detections, strict=True)):
            proposals = counts[i] if i < len(counts) else 0
            lane.put_result(Result(frame, det, per_frame, proposals, done, n))

    # ------------------------------------------------------------------ errors and the end
    def _guard(self, body: Callable[[], None]) -> None:
        try:
            body()
        except BaseException as exc:  # noqa: BLE001 — every error must reach wait(), none may hang
            with self._error_lock:
                if self._error is None:
                    self._error = exc
            self._stop.set()
            for lane in self.lanes:
                lane.close_input()
            self._finished.set()

    def _watch_end(self) -> None:
        """Marks the run finished when every stream's sink thread has ended."""
        while not self._stop.is_set():
            if all(lane.finished.is_set() for lane in self.lanes):
                self._finished.set()
                self._close_outputs()
                self._finish()
                return
            self._stop.wait(POLL_S)

    def _close_outputs(self) -> None:
        errors = []
        for lane in self.lanes:
            try:
                lane.close_sinks()
            except Exception as exc:
                errors.append(exc)
        with self._export_lock:
            if self.exporter is not None:
                try:
                    self.exporter.close()  # idempotent
                except Exception as exc:
                    errors.append(exc)
        if self.events is not None:
            try:
                self.events.close()  # after every stream's sinks: the log, the publishers (idempotent)
            except Exception as exc:
                errors.append(exc)
        if errors:
            with self._error_lock:
                if self._error is None:
                    self._error = errors[0]

    def _finish(self) -> None:
        with self._error_lock:
            if self._finish_called:
                return
            self._finish_called = True
        self._finished.set()
        if self.on_finish is not None:
            try:
                self.on_finish(self._error)
            except Exception as exc:
                log.warning("on_finish callback failed: %s", exc)

    def analytics_lines(self) -> list[str]:
        """Each stream's tracking and counting totals, for the end of a run, led by its name."""
        return [f"{lane.name}: {line}" for lane in self.lanes for line in lane.analytics.summary_lines()]

    def recordings(self) -> dict[str, Path]:
        """Each stream's recording path (those recording)."""
        return {lane.name: lane.record_sink.path for lane in self.lanes if lane.record_sink is not None}


def counts_file(export: str, name: str) -> str:
    """Where stream ``name`` writes its counts with several streams: ``dets.csv`` → ``dets-<name>.counts.json``."""
    p = Path(export)
    return str(p.with_name(f"{p.stem}-{name}.counts.json"))
