"""The pipeline: N lanes (one per source) around one batching detector worker. One source is N = 1.

```
lane 1: source ─► reader ─► [queue | LatestFrame] ─┐                         ┌─► [results] ─► sinks thread ─► its recording, export rows, window
lane 2: source ─► reader ─► [queue | LatestFrame] ─┼─► detector worker: ─────┼─► [results] ─► sinks thread ─► ...
lane N: ...                                        ┘   one batch per detect  └─► ...
```

Each lane (app/pipeline/lane.py) reads its source by its policy and draws and writes its own
results. The worker takes, without waiting, the **newest frame of each live lane** and the **next
frames of each file** (up to ``batch_size`` for one lane; one per lane with several, lanes taken in
turns so that a cap on the batch is fair), runs them through ``detect`` as **one batch** and hands
each result back to its lane. A lane with nothing waiting (a camera that is down) or a full results
queue (a slow encoder) is left out of the batch: it never stalls the others. A lane whose source
fails ends alone, after what it read is written (``wait()`` raises it with one lane, ``errors()``
lists it with several).

Every thread checks one stop event and every blocking call has a 50 ms timeout; results keep their
order and a thread's first exception reaches ``wait()`` on the caller's thread. ``stop()`` joins
within about a second and finalises every output; only a ``detect`` call already running cannot be
cut short (its thread is a daemon, its result discarded).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from app.config import MAX_STREAMS, PipelineConfig, counts_file
from app.errors import first_line
from app.frames import Frame, Result
from app.io.paths import check_output_path, per_stream_path, stream_name
from app.io.reconnect import open_source
from app.io.sources import Source
from app.pipeline.adapt import AdaptConfig, AdaptiveController
from app.pipeline.lane import END, POLL_S, Lane
from app.pipeline.render import DEFAULT_STYLE
from app.pipeline.sinks import CallbackSink, ExportSink, RecordSink, close_all, output_failures
from app.pipeline.threads import join_within
from app.stats import FpsMeter, MultiStats, PipelineStats
from detector.stages import StageTimes, detect_timed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stream:
    """One stream to run: a unique ``name`` (in file names and the export's ``stream`` column), its
    ``config`` (source, policy, its own ``record`` path; ``export`` is the run's) and its opened source."""

    name: str
    config: PipelineConfig
    source: Source


class Pipeline:
    """Runs ``detector`` on ``source`` (a pipeline of one lane) and feeds the results to sinks.

    Args:
        config: the pipeline's settings (``record`` / ``export`` / ``events`` there become sinks at ``start``).
        detector: a ``detector.Detector`` (or anything with its ``detect`` and knobs).
        source: an opened source; None = ``open_source(config)``.
        on_result: ``fn(result, annotated)`` called on the sink thread for every result.
        on_finish: ``fn(error_or_None)`` called once when no more results will come.

    Several sources: ``Pipeline.of_streams``, whose ``run_stats()`` are the run's. Typical use::

        with Pipeline(config, detector) as p:
            p.start()
            while not p.wait(0.2):
                print(p.stats().fps)
    """

    def __init__(self, config: PipelineConfig, detector, source: Source | None = None, *,
                 on_result: Callable[[Result, np.ndarray | None], None] | None = None,
                 on_finish: Callable[[BaseException | None], None] | None = None) -> None:
        source = source if source is not None else open_source(config)
        device = getattr(getattr(detector, "device", None), "type", "cpu")
        batch = config.batch_size or (4 if device == "cuda" and config.effective_policy == "every_frame" else 1)
        self._build([Stream(stream_name(config.source_kind, config.source), config, source)], detector,
                    export=config.export, overwrite=config.overwrite, batch_size=batch, events=config.events,
                    on_result=None if on_result is None else lambda name, r, a: on_result(r, a), on_finish=on_finish)

    @classmethod
    def of_streams(cls, streams: Sequence[Stream], detector, **options) -> Pipeline:
        """Runs one detector over many streams, batching their frames (``options``: see ``_build``)."""
        self = cls.__new__(cls)
        self._build(streams, detector, **options)
        return self

    def _build(self, streams: Sequence[Stream], detector, *, export: str | None = None, overwrite: bool = False,
               batch_size: int = 0, on_result: Callable[[str, Result, np.ndarray | None], None] | None = None,
               on_finish: Callable[[BaseException | None], None] | None = None, events=None) -> None:
        """The lanes of ``streams`` around one detector (``__init__``, ``of_streams``).

        Args:
            streams: the streams (at most ``MAX_STREAMS``, unique names), sources already opened.
            export: one detections file for all streams, with a ``stream`` column; None = none. A stream
                with lines or zones writes its counts beside it (``counts_file``).
            overwrite: replace existing outputs (recordings and export).
            batch_size: most frames per ``detect`` call; 0 = one per stream.
            on_result: ``fn(stream_name, result, annotated)`` on that stream's sink thread.
            events: an ``app.analytics.events.EventsConfig`` (see ``attach_events``).
        """
        names = [s.name for s in streams]
        if not streams:
            raise ValueError("no streams given")
        if len(streams) > MAX_STREAMS:
            raise ValueError(f"{len(streams)} streams given; at most {MAX_STREAMS} run in one process")
        if len(set(names)) != len(names):
            raise ValueError(f"stream names must be unique; got {names}")
        self.detector, self.export, self.overwrite, self.style = detector, export, overwrite, DEFAULT_STYLE
        self.batch_size = batch_size or len(streams)
        self.on_finish = on_finish
        self.events_config = events
        self.events = None  # app.analytics.events.Events (attach_events)
        self.export_sink: ExportSink | None = None
        self._stop = threading.Event()
        self._doorbell = threading.Event()  # rung by a lane when a frame or room for a result appears
        several = len(streams) > 1
        self.lanes = [Lane(s.name, s.config, s.source, ring=self._doorbell.set, tag=s.name if several else None,
                           per_batch=1 if several else self.batch_size) for s in streams]
        if on_result is not None:
            for lane in self.lanes:
                lane.add_sink(CallbackSink(lambda r, a, name=lane.name: on_result(name, r, a)))
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._finished = threading.Event()
        self._finish_called = False
        self._fps = FpsMeter(max(s.config.fps_window_s for s in streams))
        self._fps_lock = threading.Lock()
        self._batch_sizes: Counter[int] = Counter()
        # One controller steers the shared detector for every stream; frame skip only when all are live.
        rates = [float(s.source.rate) for s in streams if s.source.rate]
        self._all_live = all(lane.live for lane in self.lanes)
        self.adapt = AdaptiveController(detector, AdaptConfig(target_fps=streams[0].config.target_fps, live=self._all_live,
                                                              source_fps=min(rates) if rates else None))

    # ------------------------------------------------------------------ one lane's face (a single source)
    @property
    def source(self) -> Source:
        return self.lanes[0].source

    @property
    def analytics(self):
        return self.lanes[0].analytics

    @property
    def record_sink(self) -> RecordSink | None:
        return self.lanes[0].record_sink

    def record_sinks(self) -> list[RecordSink]:
        """The recordings running now, one per recording stream."""
        return [lane.record_sink for lane in self.lanes if lane.record_sink is not None]

    def start_recording(self, path: str | Path, *, overwrite: bool = False) -> list[RecordSink]:
        """Record every stream's annotated frames from its next result on (the GUI's record button):
        one stream to ``path``, several each to ``path-<name>`` as ``--record`` names them. Every path
        is checked; if one cannot be written, none starts."""
        started: list[Lane] = []
        try:
            for lane in self.lanes:
                target = per_stream_path(str(path), lane.name) if len(self.lanes) > 1 else path
                lane.start_recording(target, overwrite=overwrite)
                started.append(lane)
        except BaseException:
            for lane in started:  # nothing was written yet: the file opens with the first frame
                lane.stop_recording()
            raise
        return self.record_sinks()

    def stop_recording(self) -> list[Path]:
        """Finalise the running recordings; returns their paths (none if none was running)."""
        return [path for lane in self.lanes if (path := lane.stop_recording()) is not None]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Pipeline:
        """Open every output (recordings, counts, the export, events) and start the threads. Returns self."""
        if self._threads or self._finish_called:
            raise RuntimeError("the pipeline was already started or stopped; build a new one to run again")
        several = len(self.lanes) > 1
        counts = [counts_file(self.export, lane.name) if several and self.export else lane.config.counts_file
                  for lane in self.lanes]
        try:
            # every output checked before any is opened (the export is created at once, a counts file
            # is written when closed): a refused run leaves nothing behind
            for lane, path in zip(self.lanes, counts, strict=True):
                lane.check_outputs(path)
            if self.export:
                check_output_path(self.export, "export", overwrite=self.overwrite)
            if self.events_config is not None and self.events is None:
                # the heat maps checked are those written: h-<stream>.png with several streams, not h.png
                replace(self.events_config, heatmap=None).check_outputs(self.overwrite)
                for lane in self.lanes:
                    if heatmap := self._heatmap(self.events_config, lane):
                        check_output_path(heatmap, "heat map", overwrite=self.overwrite)
            for lane, path in zip(self.lanes, counts, strict=True):
                lane.open_outputs(path)
            if self.export:
                images = any(lane.config.source_kind == "images" for lane in self.lanes)  # a 'file' column
                self.export_sink = ExportSink(self.export, extra_columns=("stream",) if several else (),
                                              file_column=images)
                for lane in self.lanes:
                    lane.add_sink(self.export_sink.rows_of(lane.name) if several else self.export_sink)
            if self.events_config is not None and self.events is None:  # not attached by the window already
                self.attach_events(self.events_config)
        except BaseException:
            self._close_outputs()
            for lane in self.lanes:
                lane.source.close()
            raise
        for lane in self.lanes:
            lane.add_sink(CallbackSink(self._count, needs_image=False))
            lane.start(self._stop, self._guard)
            self._threads.extend(lane.threads)
        for name, body in (("detector", self._worker), ("end", self._watch_end)):
            thread = threading.Thread(target=self._guard, args=(body,), name=f"pipeline-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def attach_events(self, config) -> dict[str, list]:
        """Build the run's events (``app.analytics.events.Events``: one events file and set of publishers)
        and add each stream's event sinks, clips and heat map (``--heatmap h.png`` → ``h-<stream>.png``
        with several); the pipeline closes them at its end. ``start`` does it unless done before (the
        window does, to listen first). Returns each stream's sinks by name."""
        from app.analytics.events import Events

        if self.events is not None:
            raise RuntimeError("the events are attached already")
        self.events = Events(config, overwrite=self.overwrite)  # it checks the heat maps of sinks_for
        added = {}
        for lane in self.lanes:
            if config.needs_tracking:
                lane.analytics.set_tracking(True)
            heatmap = self._heatmap(config, lane)
            added[lane.name] = [lane.add_sink(sink) for sink in
                                self.events.sinks_for(lane.name, lane.analytics, lane.source, heatmap_path=heatmap)]
        return added

    def _heatmap(self, config, lane: Lane) -> str | None:
        """The heat map ``lane`` writes: the configured one, or with several streams its own
        (``h.png`` → ``h-<stream>.png``); None without one."""
        if config.heatmap and len(self.lanes) > 1:
            return per_stream_path(config.heatmap, lane.name)
        return config.heatmap

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every stream has ended or ``timeout`` s pass; True when ended. Re-raises the
        first failure of the detector or a sink (on this, the caller's, thread), and with one stream
        its source's failure once the frames read before it are written."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._finished.is_set():
            left = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if left <= 0:
                break
            self._finished.wait(left)  # short waits: Ctrl-C reaches the main thread promptly
        if self.error is not None:
            raise self.error
        return self._finished.is_set()

    def run(self):
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
        """Stop every thread (joined within ``timeout`` s in all), finalise every output and close
        the sources. Safe to call twice, from any thread but the pipeline's."""
        self._stop.set()
        for lane in self.lanes:
            lane.close_input()
            if getattr(lane.source, "thread_safe_close", False):
                lane.source.close()  # wakes a reader waiting on a live source that is down (app/io/reconnect.py)
        join_within(self._threads, timeout)
        self._close_outputs()
        for lane in self.lanes:
            if not any(t.is_alive() for t in lane.threads if t.name.endswith("-reader")):
                lane.source.close()  # the reader owns its source while it runs
        self._finish()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def error(self) -> BaseException | None:
        """What ``wait()`` raises (None so far)."""
        if self._error is not None or len(self.lanes) > 1 or not self._finished.is_set():
            return self._error
        return self.lanes[0].error

    def errors(self) -> dict[str, BaseException]:
        """The streams whose source failed (they ended early; the others went on)."""
        return {lane.name: lane.error for lane in self.lanes if lane.error is not None}

    def output_failures(self) -> list[str]:
        """One line per output that stopped early (disk full, file too large); the run went on."""
        return output_failures([o for lane in self.lanes for o in lane.outputs()] + [self.export_sink, self.events])

    # ------------------------------------------------------------------ live controls
    def pause(self) -> None:
        """Stop detecting until ``resume()`` (``Lane.pause``)."""
        for lane in self.lanes:
            lane.pause()

    def resume(self) -> None:
        for lane in self.lanes:
            lane.resume()

    @property
    def paused(self) -> bool:
        return all(lane.paused for lane in self.lanes)

    # ------------------------------------------------------------------ stats
    def stats(self) -> PipelineStats:
        """The first (with one source, the only) stream's stats, with the controller's status."""
        adapt = self.adapt.status()
        return replace(self.lanes[0].stats(self._finished.is_set()), adapt=adapt if adapt.target_fps is not None or adapt.changes else None)

    def run_stats(self) -> MultiStats:
        """Every stream's stats, their states and the totals of the run."""
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
                          elapsed_s=end - (self.lanes[0].started_at or now), finished=finished,
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

    def analytics_lines(self) -> list[str]:
        """Each stream's tracking and counting totals, for the end of a run, led by its name when there are several."""
        return [f"{lane.tag}: {line}" if lane.tag else line for lane in self.lanes for line in lane.analytics.summary_lines()]

    # ------------------------------------------------------------------ the detector worker
    def _take_batch(self, turn: int) -> tuple[list[tuple[Lane, Frame]], list[Lane]]:
        """The frames already waiting, up to ``batch_size``, each lane's in turn (batching never adds
        latency), and the lanes whose input ended (their end goes after this batch's results)."""
        batch: list[tuple[Lane, Frame]] = []
        ended: list[Lane] = []
        for lane in self.lanes[turn:] + self.lanes[:turn]:
            for taken in range(lane.per_batch):
                if not lane.can_take(taken):
                    break
                item = lane.take()
                if item is END:
                    lane.input_done = True
                    ended.append(lane)
                if item is None or item is END:
                    break
                lane.analytics.bind(item.size)  # lines/zones outside the frame: refused before any detection
                batch.append((lane, item))
                if len(batch) == self.batch_size:
                    return batch, ended
        return batch, ended

    def _worker(self) -> None:
        turn = 0
        idle = 0.0  # time spent waiting for frames since the last batch (not the detector's cost)
        skipped = 0  # frames each stream showed without detection since then
        while not self._stop.is_set():
            self._doorbell.clear()  # before looking: a frame arriving after this rings again
            batch, ended = self._take_batch(turn)
            turn = (turn + 1) % len(self.lanes)
            if not batch and not ended:
                if all(lane.input_done for lane in self.lanes):
                    return
                waited = time.monotonic()
                self._doorbell.wait(POLL_S)
                idle += time.monotonic() - waited
                continue
            if self._all_live and any(lane.last is not None for lane, _ in batch) and not self.adapt.detect_next():
                # Frame skip (live streams only, set by the controller): each shows its last detections
                # and overlay again (the tracker sees detected frames only); a file is never skipped.
                now, kept = time.monotonic(), []
                for lane, frame in batch:
                    if lane.last is None:
                        kept.append((lane, frame))
                    else:
                        lane.put_result(replace(lane.last, frame=frame, done=now, detected=False))
                batch, skipped = kept, skipped + 1
            if batch:
                self._detect(batch, idle, skipped)
                idle, skipped = 0.0, 0
            for lane in ended:
                lane.put_result(END)

    def _detect(self, batch: list[tuple[Lane, Frame]], idle_s: float, skipped: int) -> None:
        timed = detect_timed(self.detector, [frame.image for _, frame in batch])
        done = time.monotonic()
        if self._stop.is_set():
            return  # stopped while detecting: the streams' sinks are closed, nobody takes these
        n = len(batch)
        times = {k: v for k, v in timed.times.as_dict().items() if k != "total"}
        per_frame = StageTimes(**{k: v / n for k, v in times.items()})
        # A batch holds k frames of each stream: its cost is k frames' time of every stream.
        k = max(Counter(id(lane) for lane, _ in batch).values())
        self.adapt.observe(done, {s: v / k for s, v in times.items()}, shown=k + skipped, detected=k, idle_s=idle_s)
        counts = timed.proposals
        with self._fps_lock:
            self._batch_sizes[n] += 1
        for i, ((lane, frame), det) in enumerate(zip(batch, timed.detections, strict=True)):
            lane.put_result(Result(frame, det, per_frame, counts[i] if i < len(counts) else 0, done, n))

    # ------------------------------------------------------------------ errors and the end
    def _guard(self, body: Callable[[], None]) -> None:
        try:
            body()
        except BaseException as exc:  # noqa: BLE001 — every error must reach wait(), none may hang
            self._set_error(exc)
            self._stop.set()
            for lane in self.lanes:
                lane.close_input()

    def _watch_end(self) -> None:
        """Ends the run once every stream's sink thread has ended (its last result handed on, or stopped)."""
        while not all(lane.finished.is_set() for lane in self.lanes):
            time.sleep(POLL_S)
        self._close_outputs()
        self._finished.set()
        self._finish()

    def _set_error(self, exc: BaseException) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = exc

    def _close_outputs(self) -> None:
        # the export and the events after every stream's sinks (both idempotent)
        outputs = [o for o in (self.export_sink, self.events) if o is not None]
        if errors := close_all([lane.close_sinks for lane in self.lanes] + [o.close for o in outputs]):
            self._set_error(errors[0])

    def _finish(self) -> None:
        with self._error_lock:
            if self._finish_called:
                return
            self._finish_called = True
        self._finished.set()  # stopped before it started too: wait() must not wait for threads that never run
        if self.on_finish is not None:
            try:
                self.on_finish(self.error)
            except Exception as exc:  # a broken callback must not hide the run's own outcome
                log.warning("on_finish callback failed: %s", exc)
