"""The CLI status table: one line per stream, one line for the replicas (Ray-free)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence

from app.serve.ingest import StreamStatus

HEADER = ("stream", "state", "frames", "fps", "latency", "dropped", "retries", "batch", "node")


class RateTracker:
    """Each stream's results per second over the last ``window_s`` seconds of status polls.

    A file stream's results come back a batch at a time, so the pipeline's own sliding-window fps
    (right for one frame at a time) jumps; frames counted between polls seconds apart do not.
    """

    def __init__(self, window_s: float = 6.0) -> None:
        self.window_s = window_s
        self._seen: dict[str, deque[tuple[float, int]]] = {}

    def update(self, streams: Sequence[StreamStatus], now: float | None = None) -> dict[str, float | None]:
        now = time.monotonic() if now is None else now
        rates: dict[str, float | None] = {}
        for s in streams:
            points = self._seen.setdefault(s.name, deque())
            points.append((now, s.stats.frames_written))
            while len(points) > 2 and points[1][0] <= now - self.window_s:
                points.popleft()
            (t0, n0), (t1, n1) = points[0], points[-1]
            rates[s.name] = (n1 - n0) / (t1 - t0) if t1 > t0 else None
        return rates


def stream_row(s: StreamStatus, rate: float | None = None) -> tuple[str, ...]:
    st = s.stats
    frames = f"{st.frames_written}/{st.total_frames}" if st.total_frames else f"{st.frames_written}"
    fps = rate if s.state == "running" else st.mean_fps
    latency = st.latency_ms if s.state == "running" else st.mean_latency_ms
    return (
        s.name[:20],
        s.state,
        frames,
        f"{fps:.1f}" if fps else "--",
        f"{latency:.0f} ms" if latency is not None else "--",
        str(st.frames_dropped),
        str(s.retries),
        f"{s.batch:.1f}" if s.batch else "--",
        s.node[:32],
    )


def replicas_line(replicas: Sequence[dict]) -> str:
    """``replicas: 2 | a1b2: 7.9 fps, batch 1.8, busy 96% | ...`` (fps and busy over the last 5 s)."""
    if not replicas:
        return "replicas: none answering (starting or being replaced)"
    parts = [f"{r['replica'][:8]}: {r['fps']:.1f} fps, batch {r['batch']:.1f}, busy {r['busy']:.0%}" for r in replicas]
    knobs = f"proposals {replicas[0]['proposals']}, threshold {replicas[0]['score_threshold']:g}"
    if "precision" in replicas[0]:
        knobs += f", {replicas[0]['precision']}"
    return f"replicas: {len(replicas)} ({knobs}) | " + " | ".join(parts)


def status_table(streams: Sequence[StreamStatus], replicas: Sequence[dict] = (),
                 rates: Mapping[str, float | None] | None = None) -> list[str]:
    """The table's lines: a header, one line per stream, the replicas' line, then any stream error.
    ``rates``: each running stream's fps (``RateTracker``); default = the pipeline's own reading."""
    rates = rates if rates is not None else {s.name: s.stats.fps for s in streams}
    rows = [HEADER, *(stream_row(s, rates.get(s.name)) for s in streams)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    right = {2, 3, 4, 5, 6, 7}  # numbers align right
    lines = ["  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in rows]
    total = sum((rates.get(s.name) if s.state == "running" else 0.0) or 0.0 for s in streams)
    lines.append(f"total: {total:.1f} fps over {sum(s.state == 'running' for s in streams)} running stream(s); "
                 + replicas_line(replicas))
    lines += [f"{s.name}: {s.error}" for s in streams if s.error]
    return lines
