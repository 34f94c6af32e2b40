"""The pipeline: source → reader thread → inference worker → sink thread → sinks.

Three threads joined by bounded queues (Detectron2's ``AsyncPredictor`` shape):

* **reader** pulls ``Frame`` records from the source. ``every_frame`` puts them on a bounded queue
  (it waits when the detector is behind: none lost, order kept); ``drop_stale`` puts them in a
  one-slot ``LatestFrame`` (a newer frame replaces an untaken one, which is counted as dropped).
* **worker** takes a batch (up to ``batch_size`` frames that are already waiting), runs the
  detector and puts one ``Result`` per frame, in order, on the result queue.
* **sink thread** draws each result once and hands it to every sink (recording, export, the GUI's
  callback), then updates the fps meter.

Every loop checks the stop event, every blocking get/put has a timeout, the end of the stream
travels as a sentinel, and the first exception of any thread stops the others and is re-raised by
``wait()`` on the caller's thread. ``stop()`` joins within about a second; only a ``detect`` call
already running cannot be cut short (its thread is a daemon and its result is discarded).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from app.adapt import AdaptConfig, AdaptiveController
from app.analytics import Analytics, CountsSink
from app.config import PipelineConfig, check_output_path
from app.frames import Frame, Result
from app.lane import POLL_S, paced_frames
from app.reconnect import open_source
from app.render import DEFAULT_STYLE, Style, annotate, stats_line
from app.sinks import CallbackSink, ExportSink, RecordSink, Sink, output_failures
from app.sources import LatestFrame, Source
from app.stats import FpsMeter, PipelineStats, StageAverages
from app.threads import join_within
from detector.stages import StageTimes

log = logging.getLogger(__name__)

_END = object()  # end of stream, passed down the queues


class Pipeline:
    """Runs ``detector`` on ``source`` and feeds the results to sinks.

    Args:
        config: the pipeline's settings (``record`` / ``export`` there become sinks at ``start``).
        detector: a ``detector.Detector`` (or anything with its ``detect`` and knobs).
        source: an opened source; None = ``open_source(config)``.
        on_result: ``fn(result, annotated)`` called on the sink thread for every result.
        on_finish: ``fn(error_or_None)`` called once when no more results will come.
        style: how boxes are drawn.

    Typical use::

        with Pipeline(config, detector) as p:
            p.start()
            while not p.wait(0.2):
                print(p.stats().fps)
    """

    def __init__(self, config: PipelineConfig, detector, source: Source | None = None, *,
                 on_result: Callable[[Result, np.ndarray | None], None] | None = None,
                 on_finish: Callable[[BaseException | None], None] | None = None,
                 style: Style = DEFAULT_STYLE) -> None:
        self.config = config
        self.detector = detector
        self.source = source if source is not None else open_source(config)
        self.style = style
        self.policy = config.effective_policy
        # Tracking and counting (app/analytics.py): inert until switched on; the worker feeds it every
        # frame the detector saw, with the frame's timestamp, so IDs survive frames dropped before it.
        self.analytics = Analytics.from_config(config, float(self.source.rate) if self.source.rate else None)
        self.on_finish = on_finish
        device = getattr(getattr(detector, "device", None), "type", "cpu")
        self.batch_size = config.batch_size or (4 if device == "cuda" and self.policy == "every_frame" else 1)

        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._frames: queue.Queue = queue.Queue(maxsize=max(config.queue_size, self.batch_size))
        self._latest = LatestFrame()
        self._results: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self._sinks: list[Sink] = []
        self._sinks_lock = threading.Lock()
        self._error: BaseException | None = None
        self._deferred_error: BaseException | None = None  # a source failure, raised after the drain
        self._error_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._finished = threading.Event()
        self._finish_called = False

        self._fps = FpsMeter(config.fps_window_s)
        self._stages = StageAverages()
        self._latency: deque[float] = deque(maxlen=30)
        self._latency_sum = 0.0
        self._read = self._processed = self._written = 0
        self._proposals = 0
        self._done_times: deque[float] = deque(maxlen=100_000)  # when each result was delivered (fps series)
        rate = float(self.source.rate) if self.source.rate else None
        self.adapt = AdaptiveController(detector, AdaptConfig(target_fps=config.target_fps, live=self.policy == "drop_stale",
                                                              source_fps=rate))
        self._started_at: float | None = None
        self._first_frame_at: float | None = None
        self._last_result_at: float | None = None
        self.record_sink: RecordSink | None = None
        self.export_sink: ExportSink | None = None
        self.counts_sink: CountsSink | None = None
        self._stopped_recordings: list[RecordSink] = []  # the GUI's earlier recordings, for output_failures
        self.events = None  # app.events.Events when the config asks for events, set at start
        if on_result is not None:
            self._sinks.append(CallbackSink(on_result))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Pipeline:
        """Open the configured outputs and start the threads. Returns self."""
        if self._threads:
            raise RuntimeError("the pipeline was already started; build a new one to run again")
        try:
            if self.config.record:
                self.start_recording(self.config.record, overwrite=self.config.overwrite)
            if self.config.counts_file:  # checked before the export file is opened (and truncated)
                check_output_path(self.config.counts_file, "counts", overwrite=self.config.overwrite)
            if self.config.export:
                check_output_path(self.config.export, "export", overwrite=self.config.overwrite)
                self.export_sink = ExportSink(self.config.export, file_column=self.config.source_kind == "images")
                self.add_sink(self.export_sink)
            if self.config.counts_file:
                self.counts_sink = self.add_sink(CountsSink(self.config.counts_file, self.analytics))
            if self.config.events is not None:  # events file, clips, alerts, heat map (app/events.py)
                from app.events import attach

                self.events = attach(self, self.config.events)
        except BaseException:
            self._close_sinks()
            self.source.close()
            raise
        self._started_at = time.monotonic()
        for name, target in (("reader", self._reader), ("worker", self._worker), ("sinks", self._sink_loop)):
            thread = threading.Thread(target=self._guard, args=(target,), name=f"pipeline-{name}", daemon=True)
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run ends or ``timeout`` s pass. True when it has ended; re-raises the
        first exception of any thread (on this, the caller's, thread)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._finished.is_set():
            left = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if left <= 0:
                break
            self._finished.wait(left)  # short waits: Ctrl-C reaches the main thread promptly
        if self._error is not None:
            raise self._error
        if self._finished.is_set() and self._deferred_error is not None:
            raise self._deferred_error
        return self._finished.is_set()

    def run(self) -> PipelineStats:
        """Start (if needed), wait for the end, stop; returns the final stats. Ctrl-C stops the
        threads and finalises the outputs before ``KeyboardInterrupt`` propagates."""
        try:
            if not self._threads:
                self.start()
            self.wait()
        finally:
            self.stop()
        return self.stats()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop every thread (joined within ``timeout`` s in all), close the sinks — finalising
        a recording — and the source. Safe to call twice, from any thread but the pipeline's."""
        self._stop.set()
        self._resume.set()
        self._latest.close()
        if getattr(self.source, "thread_safe_close", False):
            self.source.close()  # wakes a reader waiting on a live source that is down (app/reconnect.py)
        join_within(self._threads, timeout)
        self._close_sinks()
        if not any(t.name == "pipeline-reader" for t in self._threads if t.is_alive()):
            self.source.close()  # the reader owns the source while it runs
        self._finish()

    close = stop

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._finished.is_set()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def error(self) -> BaseException | None:
        """The first exception of any thread; a source failure once the frames read before it are done."""
        if self._error is not None:
            return self._error
        return self._deferred_error if self._finished.is_set() else None

    # ------------------------------------------------------------------ live controls
    def pause(self) -> None:
        """Stop detecting until ``resume()``. A file waits where it is; a live source keeps
        reading and discarding frames (not counted as dropped) so that resuming shows the present."""
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    def set_proposal_count(self, n: int) -> None:
        """RPN proposals kept per frame, from the next frame on (validated by the detector)."""
        self.detector.set_proposal_count(n)

    def set_score_threshold(self, threshold: float) -> None:
        self.detector.set_score_threshold(threshold)

    def set_target_fps(self, fps: float | None) -> None:
        """Hold ``fps`` with the adaptive controller from the next frame on (None = off)."""
        self.adapt.set_target(fps)

    def set_classes(self, names: Sequence[str] | None) -> None:
        """Classes to keep (empty = all); unknown names raise, listing the valid ones."""
        self.detector.set_classes(names)

    def add_sink(self, sink: Sink) -> Sink:
        """Start feeding ``sink`` with the next result (works while running)."""
        with self._sinks_lock:
            if self._finished.is_set() and self._threads:
                raise RuntimeError("the pipeline has finished; a sink added now would get nothing")
            self._sinks.append(sink)
        return sink

    def remove_sink(self, sink: Sink) -> None:
        """Stop feeding ``sink`` and close it (a recording is finalised). Waits for a write in
        progress; no-op if the sink was not added."""
        with self._sinks_lock:
            if sink not in self._sinks:
                return
            self._sinks.remove(sink)
        sink.close()

    def start_recording(self, path: str | Path, *, overwrite: bool = False) -> RecordSink:
        """Record annotated frames to ``path`` from the next result on (the GUI's record button).
        The path is checked first; the recording's clock starts at 0."""
        if self.record_sink is not None:
            raise RuntimeError(f"already recording to {self.record_sink.path}")
        if self.config.segment_s:
            from app import segments

            segments.check_outputs(path, overwrite=overwrite)
        else:
            check_output_path(str(path), "recording", overwrite=overwrite)
        sink = RecordSink(path, time_base=self.source.time_base, rate=self.source.rate, threads=self.config.encode_threads,
                          segment_s=self.config.segment_s, overwrite=overwrite)
        self.add_sink(sink)
        self.record_sink = sink
        return sink

    def stop_recording(self) -> Path | None:
        """Finalise the running recording; returns its path (None if none was running)."""
        sink, self.record_sink = self.record_sink, None
        if sink is None:
            return None
        self.remove_sink(sink)
        self._stopped_recordings.append(sink)
        return sink.path

    def output_failures(self) -> list[str]:
        """One line per output that stopped early (disk full, file too large); the run went on."""
        return output_failures([*self._stopped_recordings, self.record_sink, self.export_sink, self.counts_sink])

    # ------------------------------------------------------------------ stats
    def stats(self) -> PipelineStats:
        now = time.monotonic()
        adapt = self.adapt.status()
        start = self._first_frame_at
        end = self._last_result_at if self._finished.is_set() else now
        mean_fps = None
        if start is not None and end is not None and end > start and self._written:
            mean_fps = self._written / (end - start)
        recent = list(self._latency)
        return PipelineStats(
            frames_read=self._read,
            frames_processed=self._processed,
            frames_written=self._written,
            frames_dropped=self._latest.dropped,
            bad_frames=self.source.bad_frames,
            total_frames=self._expected_frames(),
            fps=self._fps.fps(None if self._finished.is_set() else now),
            mean_fps=mean_fps,
            stage_ms=self._stages.recent(),
            mean_stage_ms=self._stages.mean(),
            latency_ms=sum(recent) / len(recent) * 1e3 if recent else None,
            mean_latency_ms=self._latency_sum / self._written * 1e3 if self._written else None,
            proposals=self._proposals,
            elapsed_s=(now if not self._finished.is_set() else (self._last_result_at or now)) - (self._started_at or now),
            paused=self.paused,
            finished=self._finished.is_set(),
            adapt=adapt if adapt.target_fps is not None or adapt.changes else None,
            done_times=tuple(self._done_times) if self._finished.is_set() else (),
        )

    def _expected_frames(self) -> int | None:
        total = self.source.total_frames
        if self.config.max_frames is not None:
            total = min(total, self.config.max_frames) if total else self.config.max_frames
        return total

    # ------------------------------------------------------------------ threads
    def _guard(self, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 — every error must reach wait(), none may hang
            self._record_error(exc)
            self._finish_if_done()

    def _record_error(self, exc: BaseException) -> None:
        """Keep the first error and stop everything. Called before any end-of-stream signal of a
        failing thread, so that nobody can see a normal end first."""
        with self._error_lock:
            if self._error is None:
                self._error = exc
        self._stop.set()
        self._latest.close()

    def _put(self, q: queue.Queue, item) -> bool:
        """Put with a timeout loop; False if the pipeline stopped first."""
        while not self._stop.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _reader(self) -> None:
        live = self.policy == "drop_stale"
        limit = self.config.max_frames
        try:
            for frame in paced_frames(self.source, self.config, self._stop, self._resume):
                if self._first_frame_at is None:
                    self._first_frame_at = time.monotonic()
                self._read += 1
                if live:
                    self._latest.put(frame, count_drop=not self.paused)
                elif not self._put(self._frames, frame):
                    break
                if limit is not None and self._read >= limit:
                    break
        except Exception as exc:
            # The source failed: what was read before is still detected and written (no lost
            # data), then wait() raises this error.
            self._deferred_error = exc
        finally:
            self.source.close()
        # A normal end, a stop or a source failure gets here; other exceptions go to _guard first.
        if live:
            self._latest.close()
        else:
            self._put(self._frames, _END)

    def _take_batch(self) -> tuple[list[Frame], bool]:
        """Up to ``batch_size`` frames: waits for the first, takes the others only if they are
        already there (batching never adds latency). Returns (frames, end_of_stream)."""
        if self.policy == "drop_stale":
            frame = self._latest.get(POLL_S)
            if frame is None:
                return [], self._latest.closed and len(self._latest) == 0
            return [frame], False
        try:
            item = self._frames.get(timeout=POLL_S)
        except queue.Empty:
            return [], False
        if item is _END:
            return [], True
        batch = [item]
        while len(batch) < self.batch_size:
            try:
                item = self._frames.get_nowait()
            except queue.Empty:
                break
            if item is _END:
                return batch, True
            batch.append(item)
        return batch, False

    def _worker(self) -> None:
        ended = False
        last: Result | None = None
        skipped = 0
        idle = 0.0  # time spent waiting for frames since the last detect (not the detector's cost)
        while not self._stop.is_set() and not ended:
            if not self._resume.is_set():
                self._resume.wait(POLL_S)
                continue
            waited = time.monotonic()
            batch, ended = self._take_batch()
            idle += time.monotonic() - waited
            if not batch:
                continue
            self.analytics.bind(batch[0].size)  # lines/zones outside the frame: refused before any detection
            if self.policy == "drop_stale" and last is not None and not self.adapt.detect_next():
                # Frame skip (live sources only, set by the adaptive controller): shown with the
                # last detections and overlay (the tracker sees detected frames only). A file never
                # gets here: every one of its frames is detected.
                if not self._put(self._results, replace(last, frame=batch[0], done=time.monotonic(), detected=False)):
                    return
                self._processed += 1
                skipped += 1
                continue
            detections = self.detector.detect([f.image for f in batch])
            done = time.monotonic()
            per_frame = _divide(self.detector.last_times, len(batch))
            self.adapt.observe(done, per_frame.as_dict(), shown=len(batch) + skipped, detected=len(batch), idle_s=idle)
            skipped, idle = 0, 0.0
            counts = list(getattr(self.detector, "last_proposal_counts", []) or [])
            for i, (frame, det) in enumerate(zip(batch, detections, strict=True)):
                proposals = counts[i] if i < len(counts) else 0
                det, overlay = self.analytics.process(det, frame.index, frame.seconds)
                stage_ms = per_frame.as_dict()
                if self.analytics.last_ms is not None:
                    stage_ms["track"] = self.analytics.last_ms
                result = Result(frame, det, per_frame, proposals, done, len(batch), overlay)
                if not self._put(self._results, result):
                    return
                last = result
                self._processed += 1
                self._proposals = proposals
                self._stages.add(stage_ms)
        if not self._stop.is_set():  # a normal end: tell the sink thread
            self._put(self._results, _END)

    def _sink_loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item = self._results.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if item is _END:
                    break
                self._deliver(item)
        except BaseException as exc:
            self._record_error(exc)  # before on_finish runs below
            raise
        finally:
            self._close_sinks()
            self._finished_at_end()

    def _deliver(self, result: Result) -> None:
        with self._sinks_lock:
            sinks = list(self._sinks)
            annotated = None
            if any(s.needs_image for s in sinks):
                text = None
                if self.config.draw_stats:
                    text = stats_line(self._fps.fps(), {k: v for k, v in result.times.as_dict().items()
                                                        if k in ("backbone", "rpn", "roi_heads")}, result.proposals)
                annotated = annotate(result.frame.image, result.detections, text, self.style, result.overlay)
            for sink in sinks:
                sink.write(result, annotated)
        now = time.monotonic()
        self._fps.tick(now)
        latency = now - result.frame.captured
        self._latency.append(latency)
        self._latency_sum += latency
        self._last_result_at = now
        self._done_times.append(now)
        self._written += 1

    def _close_sinks(self) -> None:
        with self._sinks_lock:
            sinks, self._sinks = self._sinks, []
        errors = []
        for sink in sinks:
            try:
                sink.close()
            except Exception as exc:  # close the others anyway, then report the first failure
                errors.append(exc)
        if errors:
            with self._error_lock:
                if self._error is None:
                    self._error = errors[0]

    def _finished_at_end(self) -> None:
        self._finished.set()
        self._finish()

    def _finish_if_done(self) -> None:
        if not any(t.is_alive() and t is not threading.current_thread() for t in self._threads):
            self._finished.set()

    def _finish(self) -> None:
        with self._error_lock:
            if self._finish_called:
                return
            self._finish_called = True
        if self._threads:
            self._finished.set()
        if self.on_finish is not None:
            try:
                self.on_finish(self._error or self._deferred_error)
            except Exception as exc:  # a broken callback must not hide the run's own outcome
                log.warning("on_finish callback failed: %s", exc)


def _divide(times: StageTimes, n: int) -> StageTimes:
    if n <= 1:
        return StageTimes(**{k: v for k, v in times.as_dict().items() if k != "total"})
    return StageTimes(**{k: v / n for k, v in times.as_dict().items() if k != "total"})
