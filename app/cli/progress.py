"""The progress of a run on stderr, one stream or many: on a terminal a ``rich`` progress line per
stream (and the total with several), redrawn in place; elsewhere (logs, CI) a plain ``line`` every
few seconds, so that a file never fills with redraws."""

from __future__ import annotations

import os
import time


def stream_text(s, adapt=None, state: str = "running") -> str:
    """One stream's frames, fps, ETA, drops (``PipelineStats``), the knobs ``adapt`` chose and its
    state when it is neither running nor ended."""
    done, total, fps = s.frames_written, s.total_frames, s.fps or s.mean_fps
    frames = f"{done}/{total} frames {min(1.0, done / total):4.0%}" if total else f"{done} frames"
    eta = ""
    if total and s.fps and not s.finished:  # not from mean_fps: one frame's latency, warm-up included
        left = max(0, total - done) / s.fps
        eta = f" | ETA {int(left // 60)}:{int(left % 60):02d}"
    dropped = f" | {s.frames_dropped} dropped" if s.frames_dropped else ""
    knobs = f" | {adapt.setting.describe()} ({adapt.state})" if adapt is not None and adapt.target_fps else ""
    state = "" if state in ("running", "ended") else f" | {state}"
    return f"{frames} | {f'{fps:5.1f}' if fps else '  ---'} fps{eta}{dropped}{knobs}{state}"


def line(stats) -> str:
    """The plain progress line of a run (``MultiStats``): one stream's bar, frames, fps and ETA; with
    several, each stream's frames, fps and state, then the total and the mean batch."""
    if len(stats.streams) == 1:
        s = next(iter(stats.streams.values()))
        bar = "#" * int(min(1.0, s.frames_written / s.total_frames) * 20) if s.total_frames else ""
        return (f"[{bar:<20}] " if s.total_frames else "") + stream_text(s, stats.adapt)
    parts = []
    for name, s in stats.streams.items():
        state = stats.states.get(name, "running")
        extra = "" if state in ("running", "ended") else f" {state.split(':', 1)[0]}"  # the reason comes at the end
        parts.append(f"{name} {s.frames_written}{f'/{s.total_frames}' if s.total_frames else ''} "
                     f"{f'{s.fps:.1f}' if s.fps else '--'} fps{extra}")
    return " | ".join(parts) + f" | all {_total_text(stats)}"


def _total_text(stats) -> str:
    return f"{f'{stats.fps:.1f}' if stats.fps else '--'} fps, batch {f'{stats.mean_batch:.1f}' if stats.mean_batch else '--'}"


class Progress:
    """Draws ``update(stats)`` (``MultiStats``) on ``stream``: a ``rich`` bar per stream on a
    terminal; elsewhere ``line(stats)`` every ``every_s`` seconds (and at the end, if one was said)."""

    def __init__(self, stream, every_s: float = 5.0) -> None:
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM") != "dumb"
        self.every_s = every_s
        self._last = 0.0
        self._bars, self._tasks = None, {}  # a rich.progress.Progress and its task per stream, on a terminal

    def message(self, text: str) -> None:
        """A line of its own above the progress bars (a reconnection, a failed output)."""
        if self._bars is not None:
            self._bars.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def update(self, stats, final: bool = False) -> None:
        if self.tty:
            return self._draw(stats, final)
        now = time.monotonic()
        if final or now - self._last >= self.every_s:
            if not final or self._last:
                self.stream.write(line(stats) + "\n")
                self.stream.flush()
            self._last = now

    def close(self) -> None:
        """Stop redrawing (the bars' last state stays on the terminal)."""
        if self._bars is not None:
            self._bars.stop()

    def _draw(self, stats, final: bool) -> None:
        rows = {name: (s.total_frames, s.frames_written, stream_text(s, stats.adapt, stats.states.get(name, "running")))
                for name, s in stats.streams.items()}
        if len(rows) > 1:
            totals = [s.total_frames for s in stats.streams.values()]
            # the total, drawn as "all": keyed None, since a stream may be named "all" (all.mp4)
            rows[None] = (sum(totals) if all(totals) else None, stats.frames_written, _total_text(stats))
        if self._bars is None:
            from rich import console, progress

            name, text = (progress.TextColumn(f"{{task.{k}}}", markup=False) for k in ("description", "fields[text]"))
            self._bars = progress.Progress(name, progress.BarColumn(bar_width=20), text, auto_refresh=False,
                                           console=console.Console(file=self.stream), redirect_stdout=False)
            self._tasks = {name: self._bars.add_task(name or "all", total=total, text="")
                           for name, (total, _, _) in rows.items()}
            self._bars.start()
        for name, (total, done, text) in rows.items():  # at the end a stream of unknown length shows as done
            self._bars.update(self._tasks[name], total=total or (max(1, done) if final else None), completed=done, text=text)
        self._bars.refresh()
        if final:
            self.close()
