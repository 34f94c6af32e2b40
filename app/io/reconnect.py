"""Live sources that survive a drop: a camera or stream that errors, ends or stalls is reopened.

``ReconnectingSource`` wraps any live source (``UrlSource``, ``CameraSource``) behind the plain
``Source`` interface, so the pipeline, the recording and the export do not know it is there:

* **A connection thread per attempt** (``_Connection``) opens the source and pumps its frames into a
  small queue; ``frames()`` waits on that queue in 50 ms steps, so it notices ``close()`` at once,
  whatever FFmpeg or the camera is doing.
* **Stall watchdog.** No frame for ``stall_timeout_s`` (5 s) while connected is a drop, like an error
  or an end. The stuck connection is abandoned, never closed under its reader: a read blocked in
  FFmpeg ends at the source's read timeout (the stall timeout) and its thread then closes the source
  (a PyAV container must not be closed from another thread while it reads).
* **Backoff.** Attempt k waits 1, 2, 4 … ≤ 30 s (``backoff_delay``); ``retries`` attempts per
  drop (``RECONNECT_FOREVER`` = no limit), then ``SourceUnavailable`` ends the stream.
* **Timestamps.** A new connection's frames are placed after the old ones at the wall-clock time the
  source was down, so timestamps never go back and the gap shows as a gap; indices keep counting.
* **Reports.** Every change of state is a ``SourceEvent``, kept for ``take_events()`` (the CLI prints
  them) and passed to listeners (the window's signal); ``drops`` and ``down_s`` feed the summary.

A stream whose server stated its length in bytes (a file served over HTTP, ``UrlSource.finite``)
ends when it ends; any other live source that ends has dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import partial

from app.config import RECONNECT_FOREVER, PipelineConfig
from app.errors import first_line
from app.frames import Frame
from app.io import put_until_stopped
from app.io.sources import DEFAULT_TIME_BASE, CameraSource, Source, SourceUnavailable, UrlSource, open_plain_source

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often frames() looks up from the queue: close() is noticed within this
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
QUEUE_FRAMES = 4  # frames a connection may hold ahead of the reader (the pipeline keeps only the newest)


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt`` (1, 2, 3 …): 1, 2, 4 … capped at 30."""
    return min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** max(0, attempt - 1))


@dataclass(frozen=True)
class SourceEvent:
    """One change of a live source's state.

    Attributes:
        source: the source's name (URL, "camera 0").
        state: "unreachable" (not there at the start), "lost" (it dropped: an error, its end, or a
            stall), "retrying" (an attempt failed), "reconnected", or "gave_up".
        reason: why it dropped / the attempt failed (one line); "" for "reconnected".
        attempt: the attempt coming next ("lost", "retrying"), the one that worked ("reconnected"),
            or the number made ("gave_up").
        next_at: ``time.monotonic()`` of the next attempt, or None.
        down_s: seconds the source has been down (for "reconnected" and "gave_up": in all, this drop).
        at: ``time.monotonic()`` of the change.
    """

    source: str
    state: str
    reason: str = ""
    attempt: int = 0
    next_at: float | None = None
    down_s: float = 0.0
    at: float = 0.0

    def status(self, now: float | None = None) -> str:
        """A short state for a window or a progress line: "reconnecting (attempt 2, next in 3 s)"."""
        if self.state in ("unreachable", "lost", "retrying"):
            now = self.at if now is None else now
            left = max(0.0, (self.next_at or now) - now)
            return f"reconnecting (attempt {self.attempt}, next in {left:.0f} s)" if left >= 0.5 else \
                f"reconnecting (attempt {self.attempt})"
        if self.state == "reconnected":
            return "live"
        return "gave up"

    def line(self) -> str:
        """The one line the CLI prints for this change."""
        wait = "" if self.next_at is None else f"next in {max(0.0, self.next_at - self.at):g} s"
        again = f"(attempt {self.attempt}, {wait})"
        if self.state == "unreachable":
            return f"{self.source}: not reachable ({self.reason}); trying again {again}"
        if self.state == "lost":
            return f"{self.source}: lost ({self.reason}); reconnecting {again}"
        if self.state == "retrying":
            return f"{self.source}: attempt {self.attempt - 1} failed ({self.reason}); reconnecting {again}"
        if self.state == "reconnected":
            return f"{self.source}: reconnected after {self.down_s:.1f} s down (attempt {self.attempt})"
        return f"{self.source}: gave up after {self.attempt} attempt(s), {self.down_s:.1f} s down ({self.reason})"


class _Connection:
    """One attempt: opens a source (unless handed one already open) and pumps its frames into a
    small queue on a daemon thread. ``abandon()`` never waits (see the module's docstring)."""

    def __init__(self, name: str, open_fn: Callable[[], Source] | None = None, source: Source | None = None) -> None:
        self.started = time.monotonic()
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(open_fn, source), name=f"source-{name}", daemon=True)
        self._thread.start()

    def _run(self, open_fn: Callable[[], Source] | None, source: Source | None) -> None:
        # The longest silence just before the end tells a read timeout (a stall) from a real end.
        # The last few gaps count too: at its end a decoder hands out the frames it held at once.
        last, gaps = None, deque([0.0], maxlen=8)  # never empty: a source may end before its first frame
        try:
            if source is None:
                source = open_fn()
            last = time.monotonic()
            if not self._put(("open", source, 0.0)):
                return
            for frame in source.frames():
                now = time.monotonic()
                gaps.append(now - last)
                last = now
                if not self._put(("frame", frame, 0.0)):
                    return
            self._put(("end", None, max(time.monotonic() - last, *gaps)))
        except BaseException as exc:  # noqa: BLE001 — every failure is handed to the reader as a drop
            # An attempt that could not open is no stall, however long opening took.
            self._put(("error", exc, 0.0 if last is None else max(time.monotonic() - last, *gaps)))
        finally:
            if source is not None:
                source.close()

    def _put(self, item) -> bool:
        return put_until_stopped(self._queue, item, self._stop, POLL_S)

    def get(self, timeout: float) -> tuple[str | None, object, float]:
        """(kind, payload, seconds of silence before it) — kind "open", "frame", "end" or "error" —
        or (None, None, 0) when nothing came within ``timeout``."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None, None, 0.0

    def abandon(self) -> None:
        """Stop pumping; the thread closes its source when FFmpeg or the camera lets it go."""
        self._stop.set()


class ReconnectingSource(Source):
    """A live source that is reopened when it drops (see the module's docstring).

    Args:
        name: shown in events and the summary (the URL, "camera 0").
        open_fn: opens the source afresh (raises ``SourceError`` with one line).
        first: the source already opened at the start; None when it could not be (then
            ``first_error`` says why and the first attempt is scheduled at once).
        retries: attempts per drop before giving up; ``RECONNECT_FOREVER`` = no limit.
        stall_timeout_s: no frame this long while connected is a drop.
        open_timeout_s: an attempt still opening after this (plus the stall timeout) is abandoned.
        backoff: seconds to wait before attempt k.
    """

    live = True
    thread_safe_close = True  # close() only signals: frames() returns within 50 ms, even while down

    def __init__(self, name: str, open_fn: Callable[[], Source], *, first: Source | None = None,
                 first_error: BaseException | None = None, retries: int = RECONNECT_FOREVER,
                 stall_timeout_s: float = 5.0, open_timeout_s: float = 10.0,
                 backoff: Callable[[int], float] = backoff_delay) -> None:
        super().__init__()
        if retries == 0:
            raise ValueError("retries must be ≥ 1 or RECONNECT_FOREVER; without reconnection use the source itself")
        self.name = name
        self.retries = retries
        self.stall_timeout_s = stall_timeout_s
        self.open_timeout_s = open_timeout_s
        self.drops = 0
        self.gave_up = False
        self._open = open_fn
        self._backoff = backoff
        self._lock = threading.Lock()
        self._listeners: list[Callable[[SourceEvent], None]] = []
        self._events: deque[SourceEvent] = deque(maxlen=100)
        self.last_event: SourceEvent | None = None
        self._down_total = 0.0
        self._down_since: float | None = None
        self._attempt = 0
        self._next_try = 0.0
        self._bad_before = 0  # bad frames of connections given up
        self._inner: Source | None = first  # the connection that delivers now
        self._index = 0  # of the next frame handed out
        self._last_pts: int | None = None
        self._last_t: Fraction | None = None  # its timestamp in seconds
        self._last_frame_at: float | None = None  # monotonic arrival of the last frame
        self._alive_at = 0.0  # the stall watchdog counts from here: the last frame, or the (re)opening
        self._offset: Fraction | None = None  # added to the current connection's timestamps
        # The first connection sets the clock and the nominal rate for the whole run; without one, the
        # rate waits for a connection to tell it. total_frames stays None (no ETA).
        self.time_base = Fraction(getattr(first, "time_base", DEFAULT_TIME_BASE))
        if first is not None:
            self.rate = first.rate
            self.notes = list(first.notes)
            for attr in ("width", "height"):
                if hasattr(first, attr):
                    setattr(self, attr, getattr(first, attr))
            self._conn: _Connection | None = _Connection(name, source=first)
            self._alive_at = time.monotonic()
        else:
            self._conn = None
            self._lose(first_line(first_error) if first_error else "not reachable", time.monotonic(), at_start=True)

    # ------------------------------------------------------------------ reports
    def add_listener(self, fn: Callable[[SourceEvent], None]) -> None:
        """Call ``fn(event)`` on every change of state (on the reading thread: keep it short). The
        latest event so far, if any, is passed at once."""
        with self._lock:
            self._listeners.append(fn)
            last = self.last_event
        if last is not None:
            fn(last)

    def take_events(self) -> list[SourceEvent]:
        """The events since the last call (for a thread that prints them)."""
        with self._lock:
            events = list(self._events)
            self._events.clear()
        return events

    @property
    def down(self) -> bool:
        """Not delivering: dropped and being reopened, or given up (read by the pipeline's stream state
        and the CLI's "every stream down" check, through ``getattr``: plain sources have no such state)."""
        return self._down_since is not None or self.gave_up

    @property
    def down_s(self) -> float:
        """Seconds down in all, including a drop still going on."""
        now = time.monotonic()
        return self._down_total + (now - self._down_since if self._down_since is not None else 0.0)

    def summary(self) -> str:
        """One line for the end of a run."""
        return f"{self.name}: {self.drops} drop(s), {self.down_s:.1f} s down in all"

    def _emit(self, event: SourceEvent) -> None:
        with self._lock:
            self.last_event = event
            self._events.append(event)
            listeners = list(self._listeners)
        log.info("%s", event.line())
        for fn in listeners:
            try:
                fn(event)
            except Exception as exc:  # a broken display must not end the stream
                log.warning("source event listener failed: %s", exc)

    # ------------------------------------------------------------------ frames
    def frames(self) -> Iterator[Frame]:
        while not self._closed.is_set():
            conn = self._conn
            if conn is None:
                wait = self._next_try - time.monotonic()
                if wait > 0:
                    self._closed.wait(min(POLL_S, wait))
                    continue
                self._attempt += 1
                self._conn = conn = _Connection(self.name, open_fn=self._open)
                continue
            kind, payload, silence = conn.get(POLL_S)
            now = time.monotonic()
            if kind is None:
                if self._inner is not None and now - self._alive_at > self.stall_timeout_s:
                    self._drop(f"no frame for {self.stall_timeout_s:g} s", now)
                elif self._inner is None and now - conn.started > self.open_timeout_s + self.stall_timeout_s:
                    self._drop(f"still opening after {now - conn.started:.0f} s", now)
                continue
            if kind == "open":
                self._connected(payload, now)
            elif kind == "frame":
                yield self._map(payload, now)
            elif kind == "end" and getattr(self._inner, "finite", False):
                return  # a file served over HTTP: its end is the end
            elif silence >= 0.9 * self.stall_timeout_s:
                # FFmpeg's read timeout (the stall timeout) ended it: say what happened, a stall
                self._drop(f"no frame for {self.stall_timeout_s:g} s", now)
            else:
                self._drop("the stream ended" if kind == "end" else first_line(payload), now)

    def _connected(self, source: Source, now: float) -> None:
        self._inner = source
        self._alive_at = now
        if self.rate is None:  # it was down from the start: the first connection tells the rate
            self.rate = source.rate
        self._offset = None  # placed after the old frames by the first new one
        for note in source.notes:
            if note not in self.notes:
                self.notes.append(note)

    def _back(self, now: float) -> None:
        """A connection's first frame: the source is up again. (Not at its opening: a server that
        accepts and drops every connection before a frame must use up the attempts, not reset them.)"""
        if self._down_since is not None:
            self._emit(SourceEvent(self.name, "reconnected", attempt=self._attempt, down_s=self._up(now), at=now))
        self._attempt = 0

    def _map(self, frame: Frame, now: float) -> Frame:
        """The frame on this source's one clock: after every frame before it, gaps kept."""
        if self._offset is None:
            self._back(now)
            if self._last_t is None:
                self._offset = Fraction(0)
            else:
                step = 1 / self.rate if self.rate else Fraction(1, 1000)
                gap = Fraction(max(0.0, frame.captured - (self._last_frame_at or frame.captured))).limit_denominator(10**6)
                self._offset = self._last_t + max(gap, step) - frame.timestamp
        t = self._offset + frame.timestamp
        pts = round(t / self.time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts, self._last_t = pts, pts * self.time_base
        self._last_frame_at = self._alive_at = now
        self.bad_frames = self._bad_before + (self._inner.bad_frames if self._inner is not None else 0)
        mapped = replace(frame, index=self._index, pts=pts, time_base=self.time_base)
        self._index += 1
        return mapped

    def _drop(self, reason: str, now: float) -> None:
        """The connection failed, ended or stalled (or an attempt failed): schedule the next attempt,
        or give up (raises ``SourceUnavailable``, which ends the stream)."""
        if self._conn is not None:
            self._conn.abandon()
            self._conn = None
        if self._inner is not None:
            self._bad_before += self._inner.bad_frames
            self._inner = None
        self._lose(reason, now)

    def _lose(self, reason: str, now: float, at_start: bool = False) -> None:
        first_drop = self._down_since is None
        if first_drop:
            self._down_since = self._last_frame_at if (self._last_frame_at and not at_start) else now
            self.drops += 0 if at_start else 1
            self._attempt = 0
        if self.retries != RECONNECT_FOREVER and self._attempt >= self.retries:
            self.gave_up = True
            self._emit(SourceEvent(self.name, "gave_up", reason, self._attempt, None, self._up(now), now))
            raise SourceUnavailable(f"{self.name}: gave up after {self._attempt} reconnection attempt(s) "
                                    f"({reason})")
        delay = self._backoff(self._attempt + 1)
        self._next_try = now + delay
        state = ("unreachable" if at_start else "lost") if first_drop else "retrying"
        self._emit(SourceEvent(self.name, state, reason, self._attempt + 1, self._next_try, now - self._down_since, now))

    def _up(self, now: float) -> float:
        """The clock of time down stops (reconnected or given up): this drop's seconds."""
        down, self._down_since = now - self._down_since, None
        self._down_total += down
        return down

    def close(self) -> None:
        super().close()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abandon()


def open_live(config: PipelineConfig) -> Source:
    """``config``'s camera or URL opened once, with the stall timeout as its read timeout."""
    if config.source_kind == "url":
        return UrlSource(config.source, timeout_s=config.open_timeout_s, read_timeout_s=config.stall_timeout_s)
    if config.source_kind == "camera":
        return CameraSource(config.source, timeout_s=config.stall_timeout_s)
    raise ValueError(f"{config.source_kind} sources are not live; they are never reopened")


def open_reconnecting(config: PipelineConfig, *, unreachable_ok: bool = False) -> ReconnectingSource:
    """``config``'s live source, reopened whenever it drops.

    The first opening happens here, on the caller's thread: a source that does not exist (no such
    camera, a URL without a scheme) raises ``SourceError`` at once. One that exists but cannot be
    reached now (``SourceUnavailable``) raises too, unless ``unreachable_ok`` — then the source
    starts down and is tried in the background (one of several streams must not stop the others).
    """
    reopen = partial(open_live, config)
    kwargs = dict(retries=config.reconnect, stall_timeout_s=config.stall_timeout_s,
                  open_timeout_s=config.open_timeout_s)
    try:
        first = reopen()
    except SourceUnavailable as exc:
        if not unreachable_ok:
            raise
        name = config.source if config.source_kind == "url" else f"camera {config.source}"
        return ReconnectingSource(name, reopen, first_error=exc, **kwargs)
    return ReconnectingSource(first.name, reopen, first=first, **kwargs)


def open_source(config: PipelineConfig) -> Source:
    """The source ``config`` names, opened (raises ``SourceError`` with one line). A live source
    with ``config.reconnect`` on comes wrapped in a ``ReconnectingSource``; the others are the plain
    sources of app/io/sources.py."""
    if config.live and config.reconnect:
        return open_reconnecting(config)
    return open_plain_source(config)
