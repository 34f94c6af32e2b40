"""Segmented recordings (``--segment S``): one recording cut into files of S seconds of stream time,
``OUT-00001.mp4``, ``OUT-00002.mp4``, … beside ``OUT``.

Each segment has its own encoder, so it starts on a keyframe and decodes on its own; the timestamps
continue from one segment to the next (the second of a 60 s cut starts at 60 s), and the segments'
frames together are the recording's. Segments are cut on a fixed grid of the stream's time (t0,
t0 + S, t0 + 2S, …), so they do not drift however the frames fall. A finished segment is closed at
once: a run of days holds one open file and one encoder.

``OUT.segments.json`` lists every segment: its file, frames, first and last stream time (s) and
wall-clock time, and whether it is complete. Rewritten atomically (app/io/durable.py) when a segment
opens or closes and every second, it is whole after a kill and at most a second behind.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import numpy as np

from app.errors import UserError
from app.io import Closing
from app.io.durable import Every, write_atomic
from app.io.paths import check_output_path
from app.io.record import Recorder, RecordError, admit

DIGITS = 5


def segment_path(path: str | Path, number: int) -> Path:
    """``out.mp4``, 3 → ``out-00003.mp4``."""
    p = Path(path)
    return p.with_name(f"{p.stem}-{number:0{DIGITS}d}{p.suffix}")


def index_path(path: str | Path) -> Path:
    """``out.mp4`` → ``out.segments.json``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.segments.json")


def existing_outputs(path: str | Path) -> list[Path]:
    """The segments and index of an earlier run with this ``path``, sorted."""
    p = Path(path)
    pattern = re.compile(rf"{re.escape(p.stem)}-\d{{{DIGITS},}}{re.escape(p.suffix)}$")  # 5 digits or more
    found = sorted(f for f in p.parent.iterdir() if pattern.match(f.name))  # not glob: "[" in a name
    return found + ([index_path(p)] if index_path(p).exists() else [])


def check_outputs(path: str | Path, *, overwrite: bool) -> None:
    """Refuse to start over an earlier run's segments unless ``overwrite`` (they are then removed
    when the recording starts, so that no stale segment sits among the new ones). Touches nothing."""
    check_output_path(str(segment_path(path, 1)), "recording segment", overwrite=True)  # folder exists, writable
    old = existing_outputs(path)
    if old and not overwrite:
        raise UserError(f"recording segments of {path} already exist ({old[0].name} and {len(old) - 1} more file(s)); "
                        "pass --overwrite to replace them (they were left untouched)")


class SegmentedRecorder(Closing):
    """A ``Recorder`` that starts a new file every ``segment_s`` seconds of stream time; the same
    ``write`` / ``close`` / counters, so the sinks and reports treat it as one recording.

    Args:
        path: the recording's name (``out.mp4``); the files are ``segment_path(path, n)``.
        segment_s: seconds of stream time per segment (> 0).
        overwrite: remove an earlier run's segments and index first (else they must not exist).
        other arguments: as ``Recorder``.
    """

    def __init__(self, path: str | Path, *, time_base: Fraction, segment_s: float, overwrite: bool = False,
                 **recorder_kwargs) -> None:
        if not segment_s > 0:
            raise ValueError(f"segment length {segment_s!r} must be > 0 seconds")
        self.path = Path(path)
        self.time_base = Fraction(time_base)
        self.segment_s = Fraction(segment_s).limit_denominator(1000)
        self.index_path = index_path(self.path)
        self.segments: list[dict] = []  # the index's entries, the open one last
        self.failed: str | None = None
        self.frames_written = self.frames_skipped = 0
        self._kwargs = recorder_kwargs
        self._overwrite = overwrite
        self._current: Recorder | None = None
        self._last: Recorder | None = None  # the latest segment's recorder (its size and padding)
        self._resized = 0  # frames scaled in the segments already closed
        self._cell: int | None = None  # the grid cell (segment slot) of the open segment
        self._t0: Fraction | None = None
        self._last_pts: int | None = None
        self._every = Every()

    # ------------------------------------------------------------------ what reports read
    @property
    def files(self) -> list[Path]:
        return [self.path.with_name(s["file"]) for s in self.segments]

    @property
    def size(self) -> tuple[int, int] | None:
        return self._last.size if self._last else None

    @property
    def padded(self) -> tuple[int, int]:
        return self._last.padded if self._last else (0, 0)

    @property
    def frames_resized(self) -> int:
        return self._resized + (self._current.frames_resized if self._current else 0)

    # ------------------------------------------------------------------ writing
    def write(self, image: np.ndarray, pts: int, time_base: Fraction | None = None) -> bool:
        """Encode one RGB image at ``pts`` × ``time_base`` s into the segment its time falls in."""
        pts = admit(self, pts, time_base)
        if pts is None:
            return False
        t = pts * self.time_base
        if self._t0 is None:
            self._t0 = t
            if self._overwrite:
                for old in existing_outputs(self.path):
                    old.unlink()
        cell = int((t - self._t0) // self.segment_s)
        if self._current is None or cell != self._cell:
            self._next(cell)
            if self.failed is not None:
                return False
        try:
            written = self._current.write(image, pts)
        except RecordError as exc:  # the file could not be created
            self._fail(str(exc))
            return False
        if self._current.failed is not None:
            self._fail(self._current.failed)
            return False
        if not written:
            self.frames_skipped += 1
            return False
        self._last_pts = pts
        self.frames_written += 1
        entry = self.segments[-1]
        entry["frames"] += 1
        entry["last_s"] = round(float(t), 6)
        entry["last_wall"] = datetime.now().astimezone().isoformat(timespec="milliseconds")
        if entry["first_s"] is None:
            entry["first_s"], entry["first_wall"] = entry["last_s"], entry["last_wall"]
        if self._every.due() or entry["frames"] == 1:  # a new segment is listed at its first frame
            self._write_index()
        return True

    def _next(self, cell: int) -> None:
        """Close the open segment (finalised, marked complete) and start the next file."""
        self._finish_current()
        if self.failed is not None:
            return
        number = len(self.segments) + 1
        self._current = self._last = Recorder(segment_path(self.path, number), time_base=self.time_base, **self._kwargs)
        self._cell = cell
        self.segments.append({"file": self._current.path.name, "frames": 0, "first_s": None, "last_s": None,
                              "first_wall": None, "last_wall": None, "complete": False})

    def _finish_current(self) -> None:
        if self._current is None:
            return
        current, self._current = self._current, None
        current.close()
        self._resized += current.frames_resized
        if current.failed is not None:
            self._fail(current.failed)
            return
        self.segments[-1]["complete"] = True
        self._write_index()

    def _write_index(self) -> None:
        index = {"recording": self.path.name, "segment_s": float(self.segment_s), "frames": self.frames_written,
                 "segments": self.segments}
        try:
            write_atomic(self.index_path, json.dumps(index, indent=1) + "\n")
        except OSError as exc:
            self._fail(f"recording index {self.index_path} could not be written: {exc.strerror or exc}")

    def _fail(self, line: str) -> None:
        if self.failed is None:
            self.failed = line
        if self._current is not None:
            current, self._current = self._current, None
            current.close()  # a failed recorder has let go of its file already; close() is then a no-op

    def _close(self) -> None:
        """Finalise the open segment and the index."""
        self._finish_current()
