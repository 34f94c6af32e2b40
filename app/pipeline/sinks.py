"""Sinks: where results go. Each gets every result, in order, on its lane's sink thread.

A sink has ``write(result, annotated)`` and ``close()``; ``needs_image`` says whether it wants the
annotated frame (drawn once per result, shared by all sinks: read-only). A sink that writes a file
has ``failed``: None, or one line saying why its file stopped early (disk full); it then ignores
later results while the other sinks go on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np

from app.frames import Result
from app.io.export import Exporter
from app.io.record import Recorder
from app.io.segments import SegmentedRecorder


class Sink(Protocol):
    needs_image: bool

    def write(self, result: Result, annotated: np.ndarray | None) -> None: ...

    def close(self) -> None: ...


class RecordSink:
    """Records annotated frames. Timestamps are the source's, shifted so that the recording starts
    at 0 — it may start mid-run (the GUI's record button)."""

    needs_image = True

    def __init__(self, path: str | Path, *, time_base: Fraction, rate: Fraction | None = None,
                 segment_s: float | None = None, overwrite: bool = False, **recorder_kwargs) -> None:
        if segment_s:  # OUT-00001.mp4, ... (app/io/segments.py)
            self.recorder = SegmentedRecorder(path, time_base=time_base, rate=rate, segment_s=segment_s,
                                              overwrite=overwrite, **recorder_kwargs)
        else:
            self.recorder = Recorder(path, time_base=time_base, rate=rate, **recorder_kwargs)
        self._first_pts: int | None = None

    @property
    def path(self) -> Path:
        return self.recorder.path

    @property
    def failed(self) -> str | None:
        return self.recorder.failed

    def write(self, result: Result, annotated: np.ndarray | None) -> None:
        frame = result.frame
        pts = round(frame.timestamp / self.recorder.time_base)
        if self._first_pts is None:
            self._first_pts = pts
        self.recorder.write(annotated if annotated is not None else frame.image, pts - self._first_pts)

    def close(self) -> None:
        self.recorder.close()


class ExportSink:
    """Writes detection rows (JSON or CSV). With several streams, one file for all: ``rows_of(name)``
    is a stream's sink, adding its ``stream`` column; writes are serialised by a lock."""

    needs_image = False

    def __init__(self, path: str | Path, *, file_column: bool = False, extra_columns: Sequence[str] = ()) -> None:
        self.exporter = Exporter(path, file_column=file_column, extra_columns=extra_columns)
        self._lock = threading.Lock()

    @property
    def failed(self) -> str | None:
        return self.exporter.failed

    def write(self, result: Result, annotated: np.ndarray | None, **extra) -> None:
        with self._lock:
            self.exporter.write(result, **extra)

    def rows_of(self, stream: str) -> CallbackSink:
        """The sink of stream ``stream``'s rows (closed with this one, not by itself)."""
        return CallbackSink(lambda result, annotated: self.write(result, annotated, stream=stream), needs_image=False)

    def close(self) -> None:
        with self._lock:
            self.exporter.close()


class CallbackSink:
    """Calls ``fn(result, annotated)`` for every result — the GUI's display hook. The call happens
    on the sink thread: a Qt receiver should only emit a signal from it."""

    def __init__(self, fn: Callable[[Result, np.ndarray | None], None], *, needs_image: bool = True) -> None:
        self.fn = fn
        self.needs_image = needs_image

    def write(self, result: Result, annotated: np.ndarray | None) -> None:
        self.fn(result, annotated)

    def close(self) -> None:
        pass


def close_all(closers: Iterable[Callable[[], None]]) -> list[Exception]:
    """Call every ``close`` in order, each even when one before it fails; returns what they raised."""
    errors = []
    for close in closers:
        try:
            close()
        except Exception as exc:
            errors.append(exc)
    return errors


def output_failures(sinks) -> list[str]:
    """The one-line failures of ``sinks`` (None entries and sinks without files are skipped)."""
    return [line for sink in sinks if sink is not None and (line := getattr(sink, "failed", None))]
