"""Sinks: where results go. Each gets every result, in order, on the pipeline's sink thread.

A sink has ``write(result, annotated)`` and ``close()``; ``needs_image`` says whether it wants the
annotated frame (drawn once per result, shared by all sinks — treat it as read-only).
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np

from app.export import Exporter
from app.frames import Result
from app.record import Recorder


class Sink(Protocol):
    needs_image: bool

    def write(self, result: Result, annotated: np.ndarray | None) -> None: ...

    def close(self) -> None: ...


class RecordSink:
    """Records annotated frames. Timestamps are the source's, shifted so that the recording starts
    at 0 — it may start mid-run (the GUI's record button)."""

    needs_image = True

    def __init__(self, path: str | Path, *, time_base: Fraction, rate: Fraction | None = None, **recorder_kwargs) -> None:
        self.recorder = Recorder(path, time_base=time_base, rate=rate, **recorder_kwargs)
        self._first_pts: int | None = None

    @property
    def path(self) -> Path:
        return self.recorder.path

    def write(self, result: Result, annotated: np.ndarray | None) -> None:
        frame = result.frame
        pts = round(frame.timestamp / self.recorder.time_base)
        if self._first_pts is None:
            self._first_pts = pts
        self.recorder.write(annotated if annotated is not None else frame.image, pts - self._first_pts)

    def close(self) -> None:
        self.recorder.close()


class ExportSink:
    """Writes detection rows (JSON or CSV)."""

    needs_image = False

    def __init__(self, path: str | Path, *, file_column: bool = False) -> None:
        self.exporter = Exporter(path, file_column=file_column)

    @property
    def path(self) -> Path:
        return self.exporter.path

    def write(self, result: Result, annotated: np.ndarray | None) -> None:
        self.exporter.write(result)

    def close(self) -> None:
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
