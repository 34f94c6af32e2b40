"""The one-line progress of a run on stderr: redrawn in place on a terminal, a plain line every few
seconds elsewhere (logs, CI), so that a file never fills with carriage returns."""

from __future__ import annotations

import time


class Progress:
    """A one-line progress bar on a terminal (frames, fps, ETA); a plain line every few seconds
    elsewhere (logs, CI), so that a file never fills with carriage returns."""

    def __init__(self, stream, every_s: float = 5.0) -> None:
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.every_s = every_s
        self._last = 0.0

    def line(self, stats) -> str:
        total = stats.total_frames
        done = stats.frames_written
        fps = stats.fps or stats.mean_fps
        if total:
            frac = min(1.0, done / total)
            bar = "#" * int(frac * 20)
            head = f"[{bar:<20}] {done}/{total} frames {frac:4.0%}"
        else:
            head = f"{done} frames"
        rate = f"{fps:5.1f} fps" if fps else "  --- fps"
        eta = ""
        if total and fps and not stats.finished:
            left = max(0, total - done) / fps
            eta = f" | ETA {int(left // 60)}:{int(left % 60):02d}"
        dropped = f" | {stats.frames_dropped} dropped" if stats.frames_dropped else ""
        adapt = getattr(stats, "adapt", None)
        knobs = f" | {adapt.setting.describe()} ({adapt.state})" if adapt is not None and adapt.target_fps else ""
        return f"{head} | {rate}{eta}{dropped}{knobs}"

    def message(self, line: str) -> None:
        """A line of its own above the progress bar (a reconnection)."""
        self.stream.write(("\r\x1b[K" if self.tty else "") + line + "\n")
        self.stream.flush()

    def update(self, stats, final: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + self.line(stats) + "\x1b[K" + ("\n" if final else ""))
            self.stream.flush()
        elif final or now - self._last >= self.every_s:
            if not final or self._last:
                self.stream.write(self.line(stats) + "\n")
                self.stream.flush()
            self._last = now
