"""Small measurement helpers: percentiles, peak memory, a progress bar. No torch model code here."""

from __future__ import annotations

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


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux: ``echo 5 > /proc/self/clear_refs``),
    so that the next ``peak_rss_mb`` covers only what ran in between. False where that is not possible,
    and the peak is then the peak since the process started."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


class Progress:
    """A progress bar over a known number of steps, on stderr.

    On a terminal it redraws one line; otherwise (a log file, CI) it prints a line every 10 %, so
    logs stay short. ``advance`` is cheap enough to call once per frame.
    """

    def __init__(self, total: int, stream=None, width: int = 28) -> None:
        self.total = max(1, int(total))
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.label = ""
        self.start = time.monotonic()
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self._last_decile = -1
        self._last_draw = 0.0

    def set_label(self, label: str) -> None:
        self.label = label
        self._draw(force=True)

    def advance(self, steps: int = 1) -> None:
        self.done = min(self.total, self.done + steps)
        self._draw()

    def close(self) -> None:
        self.done = self.total
        self._draw(force=True)
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        fraction = self.done / self.total
        elapsed = time.monotonic() - self.start
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else float("nan")
        filled = int(round(self.width * fraction))
        bar = "#" * filled + "-" * (self.width - filled)
        text = f"[{bar}] {100 * fraction:3.0f}%  {_clock(elapsed)} elapsed, ETA {_clock(eta)}  {self.label}"
        if self._tty:
            now = time.monotonic()
            if force or now - self._last_draw > 0.1:
                self._last_draw = now
                self.stream.write("\r" + text[:160].ljust(100))
                self.stream.flush()
        else:
            decile = int(fraction * 10)
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(text + "\n")
                self.stream.flush()


def _clock(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "--:--"
    seconds = int(round(seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600:d}h{seconds % 3600 // 60:02d}"
