"""Small measurement helpers: percentiles, peak memory, a progress bar. No torch model code here."""

from __future__ import annotations

import contextlib
import math
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def median_p90(values: Sequence[float]) -> tuple[float, float]:
    """(median, 90th percentile) of ``values``; (nan, nan) when there are none."""
    if not len(values):
        return float("nan"), float("nan")
    arr = np.asarray(values, dtype=np.float64)
    return float(np.median(arr)), float(np.percentile(arr, 90))


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark of this process (Linux: ``echo 5 > /proc/self/clear_refs``),
    so that the next ``peak_rss_mb`` covers only what ran in between. Where that is not possible, the
    peak stays the peak since the process started."""
    with contextlib.suppress(OSError):
        _CLEAR_REFS.write_text("5")


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (VmHWM; ru_maxrss where /proc is missing)."""
    with contextlib.suppress(OSError):
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


class Progress:
    """A progress bar over a known number of steps, on stderr.

    On a terminal a ``rich`` bar (percent, elapsed, ETA, what is measured); otherwise (a log file, CI)
    a plain line every 10 %, so logs stay short. ``advance`` is cheap enough to call once per frame.
    Used as a context manager: the bar stops on the way out, also when a measurement fails.
    """

    def __init__(self, total: int, stream=None) -> None:
        self.total, self.done, self.label, self.start = max(1, int(total)), 0, "", time.monotonic()
        self.stream = stream if stream is not None else sys.stderr
        self._last_decile, self._bar = -1, None
        if hasattr(self.stream, "isatty") and self.stream.isatty() and os.environ.get("TERM") != "dumb":
            from rich import progress as rp
            from rich.console import Console

            self._bar = rp.Progress(rp.BarColumn(bar_width=28), rp.TaskProgressColumn(), rp.TimeElapsedColumn(),
                                    rp.TextColumn("elapsed, ETA"), rp.TimeRemainingColumn(),
                                    rp.TextColumn("{task.description}", markup=False),
                                    console=Console(file=self.stream), redirect_stdout=False)
            self._task = self._bar.add_task("", total=self.total)
            self._bar.start()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, *_) -> None:  # at 100 % unless a measurement failed; the bar stops either way
        if exc_type is None:
            self.done = self.total
            self._draw()
        if self._bar is not None:
            self._bar.stop()

    def set_label(self, label: str) -> None:
        self.label = label
        self._draw()

    def advance(self, steps: int = 1) -> None:
        self.done = min(self.total, self.done + steps)
        self._draw()

    def _draw(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, description=self.label)
            return
        fraction = self.done / self.total
        decile = int(fraction * 10)
        if decile != self._last_decile:
            self._last_decile = decile
            elapsed = time.monotonic() - self.start
            eta = elapsed * (1 - fraction) / fraction if fraction > 0 else float("nan")
            bar = "#" * int(round(28 * fraction))
            self.stream.write(f"[{bar:-<28}] {100 * fraction:3.0f}%  {_clock(elapsed)} elapsed, ETA {_clock(eta)}  {self.label}\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600:d}h{seconds % 3600 // 60:02d}"
