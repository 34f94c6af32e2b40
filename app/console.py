"""What a command-line run says and how it stops — shared by the run command (one stream or many)
and serve: the exit statuses, ``note:`` lines, output failures said once, the recording's line,
and SIGTERM taking the Ctrl-C path."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

EXIT_OK = 0
EXIT_BAD_FRAMES = 1
EXIT_OUTPUT_FAILED = 4
EXIT_INTERRUPTED = 130


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class OutputFailures:
    """Says each output failure once, when it is first seen: ``error: export k.json stopped after …``."""

    def __init__(self, pipeline, progress) -> None:
        self.pipeline, self.progress = pipeline, progress
        self.lines: list[str] = []

    def report(self) -> None:
        for line in self.pipeline.output_failures():
            if line not in self.lines:
                self.lines.append(line)
                self.progress.message(f"error: {line}; the other outputs go on")


def recording_line(rec) -> str:
    """What a recording holds, for the end of a run: its file (or its segments) and frames."""
    extra = f", padded by {rec.padded[0]} column(s) and {rec.padded[1]} row(s) to an even size" if any(rec.padded) else ""
    if rec.frames_resized:
        extra += f", {rec.frames_resized} frame(s) of another size scaled to {rec.size[0]}×{rec.size[1]}"
    files = getattr(rec, "files", None)
    if files is None:
        return f"{Path(rec.path).resolve()} ({rec.frames_written} frames{extra})"
    where = f"{files[0].resolve()} … {files[-1].name}" if len(files) > 1 else (str(files[0].resolve()) if files else "no file")
    return f"{where} ({rec.frames_written} frames in {len(files)} segment(s){extra}; index {Path(rec.index_path).resolve()})"


def sigterm_as_interrupt():
    """SIGTERM takes the Ctrl-C path, so a killed run still finalises its recording."""
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def note(line: str) -> None:
    print(f"note: {line}", file=sys.stderr)
