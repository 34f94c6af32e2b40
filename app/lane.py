"""One stream of a multi-stream run: its reader, its input buffer, its results, its sinks, its stats.

A ``Lane`` is the single-stream ``Pipeline`` without the detector: the reader thread fills the
input buffer by the stream's policy (``every_frame``: a bounded queue, none lost; ``drop_stale``: a
one-slot ``LatestFrame``), the shared scheduler of ``app.multi`` takes frames out with ``take()``
and hands results back with ``put_result()``, and the lane's own sink thread draws them and feeds
its sinks (its recording, its rows of the shared export, the window). One slow stream — a stalled
camera, a slow encoder — therefore holds up only itself.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace

from app.analytics import Analytics, CountsSink
from app.config import PipelineConfig, check_output_path
from app.frames import Frame, Result
from app.render import DEFAULT_STYLE, Style, annotate, stats_line
from app.sinks import RecordSink, Sink
from app.sources import LatestFrame, Source
from app.stats import FpsMeter, PipelineStats, StageAverages

log = logging.getLogger(__name__)

POLL_S = 0.05  # the timeout of every blocking get/put (here and in app/pipeline.py): how fast a thread notices the stop event
MAX_PACE_S = 2.0  # realtime pacing never waits longer for one frame: a larger gap is a discontinuity
END = object()  # end of the stream, passed down the queues


def paced_frames(source: Source, config: PipelineConfig, stop: threading.Event,
                 resume: threading.Event | None = None) -> Iterator[Frame]:
    """The frames of ``source`` as a reader thread takes them, for the single pipeline and every lane.

    Ends when ``stop`` is set. With ``config.effective_realtime`` each frame is held until its
    timestamp comes (as a camera would deliver it) and its ``captured`` time is then; a jump of more
    than ``MAX_PACE_S`` restarts the clock. A file (every_frame) waits while ``resume`` is clear, and
    playback resumes from there; a live source goes on reading so that resuming shows the present.
    """
    live = config.effective_policy == "drop_stale"
    realtime = config.effective_realtime
    origin: float | None = None  # monotonic time of timestamp 0
    for frame in source.frames():
        if stop.is_set():
            return
        if resume is not None and not live:
            while not resume.is_set() and not stop.is_set():
                resume.wait(POLL_S)
                origin = None
        if realtime:
            now = time.monotonic()
            delay = None if origin is None else origin + frame.seconds - now
            if delay is None or delay > MAX_PACE_S:  # first frame, or a jump in the timestamps
                origin, delay = now - frame.seconds, 0.0
            if delay > 0:
                if stop.wait(delay):
                    return
                frame = replace(frame, captured=time.monotonic())  # it "arrives" now, like a camera frame
        yield frame


class Lane:
    """One stream: ``name`` (unique in the run), its ``config`` and its opened ``source``.

    ``ring`` is called after every frame put in the input buffer and every result taken off the
    results queue, so that the scheduler wakes up at once rather than at its next poll.
    """

    def __init__(self, name: str, config: PipelineConfig, source: Source, *, ring: Callable[[], None],
                 style: Style = DEFAULT_STYLE) -> None:
        self.name = name
        self.config = config
        self.source = source
        self.policy = config.effective_policy
        self.live = self.policy == "drop_stale"
        self.style = style
        # Tracking and counting of this stream (app/analytics.py): the scheduler feeds it every frame
        # of this stream that the detector saw, in order, as the single pipeline's worker does.
        self.analytics = Analytics.from_config(config, float(source.rate) if source.rate else None)
        self.counts_sink: CountsSink | None = None
        self.last: Result | None = None  # the last detected result: shown again for a skipped live frame
        self._ring = ring
        self._frames: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self._latest = LatestFrame()
        self._results: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self.sinks: list[Sink] = []
        self._sinks_lock = threading.Lock()
        self.record_sink: RecordSink | None = None
        self.input_done = False  # the scheduler has seen the end of the input (scheduler's thread only)
        self.error: BaseException | None = None  # the source's failure: the stream ended early
        self.finished = threading.Event()  # the sink thread has handed on its last result
        self.threads: list[threading.Thread] = []

        self._fps = FpsMeter(config.fps_window_s)
        self._stages = StageAverages()
        self._latency: deque[float] = deque(maxlen=30)
        self._latency_sum = 0.0
        self.read = self.processed = self.written = 0
        self.proposals = 0
        self.started_at: float | None = None
        self.first_frame_at: float | None = None
        self.last_result_at: float | None = None

    # ------------------------------------------------------------------ set-up
    def open_outputs(self, counts_file: str | None = None) -> None:
        """Open the stream's recording (``config.record``) and its counts file (``counts_file``, when
        it has lines or zones); checked again, refused untouched."""
        if counts_file and self.config.counting:
            check_output_path(counts_file, "counts", overwrite=self.config.overwrite)
            self.counts_sink = CountsSink(counts_file, self.analytics, stream=self.name)
            self.add_sink(self.counts_sink)
        if self.config.record:
            if self.config.segment_s:  # out-<stream>-00001.mp4, ... (app/segments.py)
                from app import segments

                segments.check_outputs(self.config.record, overwrite=self.config.overwrite)
            else:
                check_output_path(self.config.record, "recording", overwrite=self.config.overwrite)
            self.record_sink = RecordSink(self.config.record, time_base=self.source.time_base, rate=self.source.rate,
                                          segment_s=self.config.segment_s, overwrite=self.config.overwrite)
            self.add_sink(self.record_sink)

    def add_sink(self, sink: Sink) -> Sink:
        with self._sinks_lock:
            self.sinks.append(sink)
        return sink

    def start(self, stop: threading.Event, guard: Callable[[Callable[[], None]], None]) -> None:
        """Start the reader and sink threads; ``guard`` runs a thread body and reports what it raises."""
        self.started_at = time.monotonic()
        for role, body in (("reader", lambda: self._reader(stop)), ("sinks", lambda: self._sink_loop(stop))):
            thread = threading.Thread(target=guard, args=(body,), name=f"stream-{self.name}-{role}", daemon=True)
            self.threads.append(thread)
            thread.start()

    # ------------------------------------------------------------------ the scheduler's side
    def can_take(self) -> bool:
        """Whether a frame may be taken: input not finished and room for its result."""
        return not self.input_done and not self._results.full()

    def take(self):
        """The next frame (files) or the newest one (live), without waiting: a ``Frame``, None
        when none is waiting, or ``END`` once the input is finished."""
        if self.policy == "drop_stale":
            frame = self._latest.get(0.0)
            if frame is None and self._latest.closed and len(self._latest) == 0:
                return END
            return frame
        try:
            return self._frames.get_nowait()
        except queue.Empty:
            return None

    def put_result(self, item) -> None:
        """A ``Result`` (or ``END``). Never blocks: only the scheduler puts, after ``can_take()``.
        A detected result goes through the stream's tracker and counters first."""
        if isinstance(item, Result):
            stage_ms = item.times.as_dict()
            if item.detected:
                self.analytics.bind(item.frame.size)  # a line or zone outside the frame: refused (UserError)
                det, overlay = self.analytics.process(item.detections, item.frame.index, item.frame.seconds)
                item = replace(item, detections=det, overlay=overlay)
                if self.analytics.last_ms is not None:
                    stage_ms["track"] = self.analytics.last_ms
                self.last = item
                self._stages.add(stage_ms)
            self.processed += 1
            self.proposals = item.proposals
        self._results.put_nowait(item)

    def close_input(self) -> None:
        """Wake a waiting reader and scheduler: the run is stopping."""
        self._latest.close()

    # ------------------------------------------------------------------ threads
    def _reader(self, stop: threading.Event) -> None:
        live = self.policy == "drop_stale"
        limit = self.config.max_frames
        try:
            for frame in paced_frames(self.source, self.config, stop):
                if self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
                self.read += 1
                if live:
                    self._latest.put(frame)
                elif not self._put(self._frames, frame, stop):
                    break
                self._ring()
                if limit is not None and self.read >= limit:
                    break
        except Exception as exc:
            # This stream's source failed: what it delivered is still detected and written, the
            # other streams go on, and the run reports the error at its end.
            self.error = exc
        finally:
            self.source.close()
        if live:
            self._latest.close()
        else:
            self._put(self._frames, END, stop)
        self._ring()

    def _sink_loop(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    item = self._results.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                self._ring()  # room for another result: the scheduler may take this stream's next frame
                if item is END:
                    break
                self._deliver(item)
        finally:
            self.close_sinks()
            self.finished.set()

    def _deliver(self, result: Result) -> None:
        with self._sinks_lock:  # held while writing: close_sinks() waits for a write in progress
            annotated = None
            if any(s.needs_image for s in self.sinks):
                text = None
                if self.config.draw_stats:
                    stages = {k: v for k, v in result.times.as_dict().items() if k in ("backbone", "rpn", "roi_heads")}
                    text = f"{self.name} | " + stats_line(self._fps.fps(), stages, result.proposals)
                annotated = annotate(result.frame.image, result.detections, text, self.style, result.overlay)
            for sink in self.sinks:
                sink.write(result, annotated)
        now = time.monotonic()
        self._fps.tick(now)
        latency = now - result.frame.captured
        self._latency.append(latency)
        self._latency_sum += latency
        self.last_result_at = now
        self.written += 1

    def close_sinks(self) -> None:
        """Close every sink (a recording is finalised); the first failure is raised after all closed."""
        with self._sinks_lock:
            sinks, self.sinks = self.sinks, []
        errors = []
        for sink in sinks:
            try:
                sink.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    @staticmethod
    def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    # ------------------------------------------------------------------ stats
    def stats(self, finished: bool) -> PipelineStats:
        now = time.monotonic()
        start, end = self.first_frame_at, (self.last_result_at if finished else now)
        mean_fps = self.written / (end - start) if start is not None and end is not None and end > start and self.written else None
        recent = list(self._latency)
        total = self.source.total_frames
        if self.config.max_frames is not None:
            total = min(total, self.config.max_frames) if total else self.config.max_frames
        return PipelineStats(
            frames_read=self.read,
            frames_processed=self.processed,
            frames_written=self.written,
            frames_dropped=self._latest.dropped,
            bad_frames=self.source.bad_frames,
            total_frames=total,
            fps=self._fps.fps(None if finished else now),
            mean_fps=mean_fps,
            stage_ms=self._stages.recent(),
            mean_stage_ms=self._stages.mean(),
            latency_ms=sum(recent) / len(recent) * 1e3 if recent else None,
            mean_latency_ms=self._latency_sum / self.written * 1e3 if self.written else None,
            proposals=self.proposals,
            elapsed_s=((self.last_result_at or now) if finished else now) - (self.started_at or now),
            finished=finished,
        )
