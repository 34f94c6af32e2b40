"""One stream of a pipeline: its reader, its input buffer, its results, its sinks, its stats.

The reader thread fills the input buffer by the stream's policy (``every_frame``: a bounded queue,
none lost; ``drop_stale``: a one-slot ``LatestFrame``), the pipeline's detector worker takes frames
with ``take()`` and hands results back with ``put_result()``, and the lane's own sink thread draws
them and feeds its sinks. One slow stream — a stalled camera, a slow encoder — holds up only itself.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from app.analytics.analytics import Analytics, CountsSink
from app.config import PipelineConfig, check_output_path
from app.frames import Frame, Result
from app.io import put_until_stopped
from app.io.sources import LatestFrame, Source
from app.pipeline.render import annotate, stats_line
from app.pipeline.sinks import RecordSink, Sink, close_all
from app.stats import FpsMeter, PipelineStats, StageAverages

POLL_S = 0.05  # the timeout of every blocking get/put (here and in app/pipeline/pipeline.py): how fast a thread notices the stop event
MAX_PACE_S = 2.0  # realtime pacing never waits longer for one frame: a larger gap is a discontinuity
END = object()  # end of the stream, passed down the queues


def paced_frames(source: Source, config: PipelineConfig, stop: threading.Event,
                 resume: threading.Event) -> Iterator[Frame]:
    """The frames of ``source`` as a lane's reader thread takes them, until ``stop`` is set.

    With ``config.effective_realtime`` each frame is held until its timestamp comes (as a camera
    would deliver it) and is ``captured`` then; a jump over ``MAX_PACE_S`` restarts the clock. A
    paced file (every_frame) waits while ``resume`` is clear and resumes from there.
    """
    live = config.effective_policy == "drop_stale"
    realtime = config.effective_realtime
    origin: float | None = None  # monotonic time of timestamp 0
    for frame in source.frames():
        if stop.is_set():
            return
        if realtime and not live:
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

    ``ring`` wakes the detector worker: called after every frame put in and every result taken out.
    ``tag`` leads the stats line drawn on its frames (None for one stream). ``per_batch``: most
    frames of this stream in one detector batch.
    """

    def __init__(self, name: str, config: PipelineConfig, source: Source, *, ring: Callable[[], None],
                 tag: str | None = None, per_batch: int = 1) -> None:
        self.name, self.config, self.source, self.tag = name, config, source, tag
        self.live = config.effective_policy == "drop_stale"
        self.per_batch = per_batch
        # Tracking and counting: fed every detected frame of this stream, in order (put_result).
        self.analytics = Analytics.from_config(config, float(source.rate) if source.rate else None)
        self.counts_sink: CountsSink | None = None
        self.record_sink: RecordSink | None = None
        self.stopped_recordings: list[RecordSink] = []  # the GUI's earlier recordings, for output_failures
        self.last: Result | None = None  # the last detected result: shown again for a skipped live frame
        self._ring = ring
        capacity = max(config.queue_size, per_batch)  # frames or results waiting: a full batch fits
        self._frames: queue.Queue = queue.Queue(maxsize=capacity)
        self._latest = LatestFrame()
        self._results: queue.Queue = queue.Queue()  # bounded by can_take: only the worker puts
        # results waiting for the sinks: a live stream's one only (a slow sink must not make it late)
        self._results_room = 1 if self.live else capacity
        self._resume = threading.Event()
        self._resume.set()
        self.sinks: list[Sink] = []
        self._sinks_lock = threading.Lock()
        self.input_done = False  # the worker has seen the end of the input (worker's thread only)
        self.error: BaseException | None = None  # the source's failure: the stream ended early
        self.finished = threading.Event()  # the sink thread has handed on its last result
        self.threads: list[threading.Thread] = []

        self._fps = FpsMeter(config.fps_window_s)
        self._stages = StageAverages()
        self._latency: deque[float] = deque(maxlen=30)
        self._latency_sum = 0.0
        self._done_times: deque[float] = deque(maxlen=100_000)  # when each result was delivered (fps series)
        self.read = self.processed = self.written = self.proposals = 0
        self.started_at: float | None = None
        self.first_frame_at: float | None = None
        self.last_result_at: float | None = None
        self.ended_at: float | None = None  # when the sink thread ended (the stream's elapsed time stops)

    # ------------------------------------------------------------------ outputs
    def check_outputs(self, counts_file: str | None = None) -> None:
        """Refuse the stream's counts file (``counts_file``, when it has lines or zones) or its
        recording (``config.record``) if it must not be written; touches nothing."""
        if counts_file and self.config.counting:
            check_output_path(counts_file, "counts", overwrite=self.config.overwrite)
        if self.config.record:
            self._check_recording(self.config.record, overwrite=self.config.overwrite)

    def open_outputs(self, counts_file: str | None = None) -> None:
        """Open the outputs ``check_outputs`` checked (a counts file is written when closed)."""
        if counts_file and self.config.counting:
            self.counts_sink = self.add_sink(CountsSink(counts_file, self.analytics, stream=self.tag))
        if self.config.record:
            self.start_recording(self.config.record, overwrite=self.config.overwrite)

    def add_sink(self, sink: Sink) -> Sink:
        """Start feeding ``sink`` with the next result (works while running)."""
        with self._sinks_lock:
            if self.finished.is_set():
                raise RuntimeError("the pipeline has finished; a sink added now would get nothing")
            self.sinks.append(sink)
        return sink

    def remove_sink(self, sink: Sink) -> None:
        """Stop feeding ``sink`` and close it (a recording is finalised). Waits for a write in
        progress; no-op if the sink was not added."""
        with self._sinks_lock:
            if sink not in self.sinks:
                return
            self.sinks.remove(sink)
        sink.close()

    def _check_recording(self, path: str | Path, *, overwrite: bool) -> None:
        if self.config.segment_s:
            from app.io import segments

            segments.check_outputs(path, overwrite=overwrite)
        else:
            check_output_path(str(path), "recording", overwrite=overwrite)

    def start_recording(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Record annotated frames to ``path`` from the next result on; the path is checked first."""
        if self.record_sink is not None:
            raise RuntimeError(f"already recording to {self.record_sink.path}")
        self._check_recording(path, overwrite=overwrite)
        self.record_sink = self.add_sink(RecordSink(path, time_base=self.source.time_base, rate=self.source.rate,
                                                    threads=self.config.encode_threads, segment_s=self.config.segment_s,
                                                    overwrite=overwrite))

    def stop_recording(self) -> Path | None:
        """Finalise the running recording; returns its path (None if none was running)."""
        sink, self.record_sink = self.record_sink, None
        if sink is None:
            return None
        self.remove_sink(sink)
        self.stopped_recordings.append(sink)
        return sink.path

    def outputs(self) -> list:
        """Its recordings and counts file, for ``output_failures``."""
        return [*self.stopped_recordings, self.record_sink, self.counts_sink]

    # ------------------------------------------------------------------ pause
    def pause(self) -> None:
        """Take no frame until ``resume()``. A file waits where it is; a live source keeps reading
        and discarding frames (not counted as dropped) so that resuming shows the present."""
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()
        self._ring()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    def start(self, stop: threading.Event, guard: Callable[[Callable[[], None]], None]) -> None:
        """Start the reader and sink threads; ``guard`` runs a thread body and reports what it raises."""
        self.started_at = time.monotonic()
        for role, body in (("reader", lambda: self._reader(stop)), ("sinks", lambda: self._sink_loop(stop))):
            thread = threading.Thread(target=guard, args=(body,), name=f"pipeline-{self.name}-{role}", daemon=True)
            self.threads.append(thread)
            thread.start()

    # ------------------------------------------------------------------ the detector worker's side
    def can_take(self, taken: int = 0) -> bool:
        """Whether a frame may be taken, ``taken`` being taken already for this batch: not paused,
        input not finished and room for its result (at most ``queue_size`` results waiting, a full
        batch at least; a live stream's one)."""
        room = self._results_room - self._results.qsize() - taken
        return self._resume.is_set() and not self.input_done and room > 0

    def take(self):
        """The next frame (files) or the newest one (live), without waiting: a ``Frame``, None
        when none is waiting, or ``END`` once the input is finished."""
        if self.live:
            frame = self._latest.get(0.0)
            if frame is None and self._latest.closed and len(self._latest) == 0:
                return END
            return frame
        try:
            return self._frames.get_nowait()
        except queue.Empty:
            return None

    def put_result(self, item) -> None:
        """A ``Result`` (or ``END``). Never blocks: only the worker puts, after ``can_take()``.
        A detected result goes through the stream's tracker and counters first."""
        if isinstance(item, Result):
            if item.detected:
                stage_ms = item.times.as_dict()
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
        """Wake a waiting reader and worker: the run is stopping."""
        self._resume.set()
        self._latest.close()

    # ------------------------------------------------------------------ threads
    def _reader(self, stop: threading.Event) -> None:
        limit = self.config.max_frames
        try:
            for frame in paced_frames(self.source, self.config, stop, self._resume):
                if self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
                self.read += 1
                if self.live:
                    self._latest.put(frame, count_drop=not self.paused)
                elif not put_until_stopped(self._frames, frame, stop, POLL_S):
                    break
                self._ring()
                if limit is not None and self.read >= limit:
                    break
        except Exception as exc:  # what it delivered is still written; the other streams go on
            self.error = exc
        finally:
            self.source.close()
        if self.live:
            self._latest.close()
        else:
            put_until_stopped(self._frames, END, stop, POLL_S)
        self._ring()

    def _sink_loop(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    item = self._results.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                self._ring()  # room for another result: the worker may take this stream's next frame
                if item is END:
                    break
                self._deliver(item)
        finally:
            try:
                self.close_sinks()
            finally:
                self.ended_at = time.monotonic()
                self.finished.set()

    def _deliver(self, result: Result) -> None:
        with self._sinks_lock:  # held while writing: close_sinks() waits for a write in progress
            annotated = None
            if any(s.needs_image for s in self.sinks):
                text = None
                if self.config.draw_stats:
                    stages = {k: v for k, v in result.times.as_dict().items() if k in ("backbone", "rpn", "roi_heads")}
                    text = stats_line(self._fps.fps(), stages, result.proposals)
                    text = f"{self.tag} | {text}" if self.tag else text
                annotated = annotate(result.frame.image, result.detections, text, overlay=result.overlay)
            for sink in self.sinks:
                sink.write(result, annotated)
        now = time.monotonic()
        self._fps.tick(now)
        latency = now - result.frame.captured
        self._latency.append(latency)
        self._latency_sum += latency
        self.last_result_at = now
        self._done_times.append(now)
        self.written += 1

    def close_sinks(self) -> None:
        """Close every sink (a recording is finalised); the first failure is raised after all closed."""
        with self._sinks_lock:
            sinks, self.sinks = self.sinks, []
        if errors := close_all([sink.close for sink in sinks]):
            raise errors[0]

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
            elapsed_s=(((self.last_result_at or self.ended_at or now) if finished else now)
                       - (self.started_at or now)),
            paused=self.paused,
            finished=finished,
            done_times=tuple(self._done_times) if finished else (),
        )
