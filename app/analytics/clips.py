"""Event clips: an annotated H.264 mp4 around each event, cut from frames already drawn.

``ClipWriter.add_frame`` gets every annotated frame of a stream (on the sink thread) and keeps the
last ``pre_s`` seconds in a ring buffer. ``on_event(t)`` opens a clip from ``pre_s`` before ``t``
(the buffer's frames go in at once) to ``post_s`` after; an event whose ``pre_s`` reaches into an
open clip extends it instead, so overlapping events share one file.

Encoding runs on the writer's own thread, fed by a queue bounded in bytes: an encoder that falls
behind loses frames (counted), never holds up the detector. ``close()`` ends an open clip with what
arrived and joins the thread within a bounded time.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from fractions import Fraction
from pathlib import Path

import numpy as np

from app.errors import first_line
from app.io import Closing
from app.io.paths import first_free
from app.io.record import Recorder

log = logging.getLogger(__name__)

MAX_QUEUED_BYTES = 256 * 2**20  # frames waiting for the encoder; beyond it they are dropped
MAX_RING_BYTES = 512 * 2**20  # the pre-event buffer never holds more than this
JOIN_S = 10.0  # close() waits this long at most for the encoder to finish the last clip


class ClipWriter(Closing):
    """One stream's event clips.

    Args:
        folder: where the clips go (exists).
        stream: the stream's name, first in every clip's file name.
        pre_s, post_s: seconds before and after an event.
        rate: the source's nominal frame rate (the encoder's hint); None = 25.
        overwrite: replace a clip file of the same name; without it a new name is taken.
    """

    def __init__(self, folder: str | Path, *, stream: str, pre_s: float, post_s: float,
                 rate: Fraction | None = None, overwrite: bool = False) -> None:
        self.folder, self.stream = Path(folder), stream
        self.pre_s, self.post_s = float(pre_s), float(post_s)
        self.rate, self.overwrite = rate, overwrite
        self._ring: deque[tuple[float, int, Fraction, np.ndarray]] = deque()
        self._ring_bytes = 0
        self._open: dict | None = None  # {"path", "end"}
        self._queue: queue.Queue = queue.Queue()
        self._queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._encode_loop, name=f"clips-{stream}", daemon=True)
        self._thread.start()
        self.paths: list[Path] = []
        self.frames_dropped = 0
        self.errors: list[str] = []

    # ------------------------------------------------------------------ the sink thread
    def on_event(self, t: float, label: str) -> Path:
        """An event at ``t`` seconds (stream time): the clip it is in (opened or extended)."""
        if self._open is not None and t - self.pre_s <= self._open["end"]:
            self._open["end"] = max(self._open["end"], t + self.post_s)
            return self._open["path"]
        self._finish()
        path = self._name(t, label)
        self._open = {"path": path, "end": t + self.post_s}
        self.paths.append(path)
        self._queue.put(("open", path))
        for seconds, pts, time_base, image in self._ring:
            if seconds >= t - self.pre_s - 1e-9:
                self._send(image, pts, time_base)
        return path

    def add_frame(self, frame, annotated: np.ndarray | None) -> None:
        """One drawn frame (``frame``: its ``app.frames.Frame``; ``annotated``: uint8 [H, W, 3] RGB,
        read-only — kept by reference, never written to)."""
        image = annotated if annotated is not None else frame.image
        t = frame.seconds
        if self._open is not None:
            if t <= self._open["end"] + 1e-9:
                self._send(image, frame.pts, frame.time_base)
            else:
                self._finish()
        self._ring.append((t, frame.pts, frame.time_base, image))
        self._ring_bytes += image.nbytes
        while self._ring and (self._ring[0][0] < t - self.pre_s - 1e-9 or self._ring_bytes > MAX_RING_BYTES):
            self._ring_bytes -= self._ring.popleft()[3].nbytes

    def _send(self, image: np.ndarray, pts: int, time_base: Fraction) -> None:
        with self._bytes_lock:
            if self._queued_bytes + image.nbytes > MAX_QUEUED_BYTES:
                self.frames_dropped += 1
                return
            self._queued_bytes += image.nbytes
        self._queue.put(("frame", image, pts, time_base))

    def _finish(self) -> None:
        if self._open is not None:
            self._queue.put(("close",))
            self._open = None

    def _name(self, t: float, label: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)
        base = f"{self.stream}-{t:08.3f}s-{safe}"
        def taken(name: str) -> bool:
            path = self.folder / f"{name}.mp4"
            return not self.overwrite and (path.exists() or path in self.paths)

        return self.folder / f"{first_free(base, taken)}.mp4"

    def _close(self) -> None:
        """End an open clip and wait (at most ``JOIN_S``) for the encoder to finish it."""
        self._finish()
        self._queue.put(("end",))
        self._thread.join(JOIN_S)
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(1.0)
            self.errors.append(f"the encoder did not finish within {JOIN_S:g} s; the last clip may be cut short")
        self._ring.clear()

    # ------------------------------------------------------------------ the encoder thread
    def _encode_loop(self) -> None:
        path = recorder = first_pts = None  # the open clip's file; its recorder from its first frame on
        try:
            while not self._stop.is_set():
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item[0] == "frame":
                    _, image, pts, time_base = item
                    with self._bytes_lock:
                        self._queued_bytes -= image.nbytes
                    if path is None:
                        continue
                    try:
                        if recorder is None:  # the clip's time base is its first frame's
                            recorder, first_pts = Recorder(path, time_base=time_base, rate=self.rate), pts
                        recorder.write(image, pts - first_pts)
                    except Exception as exc:  # the file could not be created: say so once, keep the run going
                        self._fail(f"clip {path}: {first_line(exc)}")
                        path = recorder = None
                        continue
                    if recorder.failed is not None:  # a full disk: the recorder stopped (and closed) itself
                        self._fail(f"clip {recorder.failed}")
                        path = recorder = None
                elif item[0] == "open":
                    self._close_recorder(recorder)
                    path, recorder = item[1], None
                elif item[0] == "close":
                    self._close_recorder(recorder)
                    path = recorder = None
                else:  # "end"
                    break
        finally:
            self._close_recorder(recorder)

    def _close_recorder(self, recorder) -> None:
        if recorder is None:
            return
        try:
            recorder.close()
        except Exception as exc:
            self._fail(f"clip {recorder.path}: {first_line(exc)}")
        if recorder.failed is not None:  # finishing the file failed: the recorder says so in ``failed``
            self._fail(f"clip {recorder.failed}")

    def _fail(self, message: str) -> None:
        self.errors.append(message)
        log.warning(message)

    def summary(self) -> str:
        text = f"event clips {self.stream}: {len(self.paths)} in {self.folder.resolve()}"
        if self.frames_dropped:
            text += f", {self.frames_dropped} frame(s) dropped (the encoder fell behind)"
        if self.errors:
            text += f"; {len(self.errors)} error(s), first: {self.errors[0]}"
        return text

