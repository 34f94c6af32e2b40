"""One frozen configuration object for the pipeline, filled by the CLI and the GUI alike."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.errors import UserError
from app.io.paths import check_output_path, refuse_clashes  # the outputs' rules (imported from here too)

SOURCE_KINDS = ("video", "camera", "images", "url")
# every_frame: files and image folders — frames in = frames out, none lost, order kept.
# drop_stale: live sources — only the newest frame waits for the detector; older ones are dropped
# and counted, so latency never builds up when inference is slower than the source.
POLICIES = ("auto", "every_frame", "drop_stale")
LIVE_KINDS = ("camera", "url")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".m4v")  # containers that take H.264
EXPORT_EXTENSIONS = (".json", ".jsonl", ".csv")
RECONNECT_FOREVER = -1  # PipelineConfig.reconnect: retry a dropped live source without end
MAX_STREAMS = 16  # streams one process runs with one detector (app/pipeline/pipeline.py)


@dataclass(frozen=True)
class PipelineConfig:
    """Where frames come from, where results go, and how the threads run.

    Attributes:
        source_kind: "video", "camera", "images" or "url".
        source: a file path, a camera index ("0"), a folder or glob of images, or a URL.
        record: annotated H.264 video to write (.mp4/.mkv/.mov/.m4v), or None.
        export: detections to write as rows (.json, .jsonl or .csv), or None.
        segment_s: cut the recording into files of this many seconds of stream time
            (``app.io.segments``: OUT-00001.mp4, … and OUT.segments.json); None = one file.
        overwrite: replace existing outputs; without it an existing output is refused untouched.
        max_frames: stop after this many frames read from the source; None = all.
        policy: "every_frame", "drop_stale", or "auto" (drop_stale for cameras and URLs).
        realtime: pace frames at their own timestamps, as a camera would deliver them. None = auto:
            on for URLs (a "live" URL may be a file arriving faster than real time), else off.
        batch_size: frames per ``detect`` call; 0 = auto (4 on CUDA for every_frame sources, else 1).
        queue_size: capacity of each queue between threads (frames).
        image_fps: the frame rate given to an image folder, which has no timestamps.
        open_timeout_s: how long to wait for a camera or URL to open or to deliver a frame.
        fps_window_s: the sliding window of the fps measurement.
        draw_stats: draw the fps / stage-ms line on annotated frames.
        adapt_log: a .json file for the controller's moves and fps series (needs ``target_fps``).
        target_fps: frames per second for the adaptive controller (``app.pipeline.adapt``) to hold;
            None = off.
        decode_threads / encode_threads: FFmpeg's decoder and libx264's threads; 0 = their own choice.
        headless: no window (the CLI's --headless).
        track: give every detection a persistent track ID (ByteTrack); lines and zones turn it on too.
        trails: draw each track's recent path.
        lines: counting lines, each (x1, y1, x2, y2): fractions of the frame when all are in [0, 1],
            else source pixels (``app.analytics.count.Shape``).
        zones: counting zones, each (x1, y1, x2, y2, x3, y3, …), the same way.
        reconnect: attempts to reopen a live source that dropped (errored, ended or stalled)
            before giving up; ``RECONNECT_FOREVER`` (-1, the default) never gives up, 0 = off.
            Files and image folders are never reopened.
        stall_timeout_s: a live source that delivers no frame this long has dropped.
        events: the events file, clips, alerts, heat map (``app.analytics.events.EventsConfig``).
    """

    source_kind: str = "video"
    source: str = ""
    record: str | None = None
    export: str | None = None
    segment_s: float | None = None
    overwrite: bool = False
    max_frames: int | None = None
    policy: str = "auto"
    realtime: bool | None = None
    batch_size: int = 0
    queue_size: int = 8
    image_fps: float = 10.0
    open_timeout_s: float = 10.0
    fps_window_s: float = 2.0
    draw_stats: bool = True
    target_fps: float | None = None
    adapt_log: str | None = None
    decode_threads: int = 0
    encode_threads: int = 0
    headless: bool = False
    track: bool = False
    trails: bool = True
    lines: tuple[tuple[float, ...], ...] = ()
    zones: tuple[tuple[float, ...], ...] = ()
    reconnect: int = RECONNECT_FOREVER
    stall_timeout_s: float = 5.0
    events: Any = None  # app.analytics.events.EventsConfig (imported lazily: it imports this module)

    def __post_init__(self) -> None:
        if self.source_kind not in SOURCE_KINDS:
            raise UserError(f"source kind {self.source_kind!r} is unknown; expected one of {', '.join(SOURCE_KINDS)}")
        if not isinstance(self.source, str) or not self.source:
            raise UserError(f"no {self.source_kind} given: the source is {self.source!r}")
        if self.source_kind == "camera" and not (self.source.isdigit() or self.source.startswith("/dev/")):
            raise UserError(f"camera {self.source!r} must be an index such as 0 or a device such as /dev/video0")
        if self.policy not in POLICIES:
            raise UserError(f"policy {self.policy!r} is unknown; expected one of {', '.join(POLICIES)}")
        if self.max_frames is not None and (not _is_number(self.max_frames, int) or self.max_frames < 1):
            raise UserError(f"max frames {self.max_frames!r} must be an integer ≥ 1")
        if self.target_fps is not None and (not _is_number(self.target_fps) or not 0 < self.target_fps <= 1000):
            raise UserError(f"target fps {self.target_fps!r} must be a number in (0, 1000]")
        for name, value in (("batch size", self.batch_size), ("decode_threads", self.decode_threads),
                            ("encode_threads", self.encode_threads)):
            if not _is_number(value, int) or not 0 <= value <= 64:
                raise UserError(f"{name} {value!r} must be an integer between 0 (auto) and 64")
        if not _is_number(self.queue_size, int) or not 1 <= self.queue_size <= 256:
            raise UserError(f"queue size {self.queue_size!r} must be an integer between 1 and 256")
        if not _is_number(self.reconnect, int) or self.reconnect < RECONNECT_FOREVER:
            raise UserError(f"reconnect {self.reconnect!r} must be a number of attempts ≥ 0, or forever")
        for name, words in (("image_fps", "image fps"), ("open_timeout_s", "open timeout"),
                            ("fps_window_s", "fps window"),
                            ("stall_timeout_s", "stall timeout (--stall-timeout)")):
            value = getattr(self, name)
            if not _is_number(value) or not 0 < value <= 1000:
                raise UserError(f"{words} {value!r} must be a number in (0, 1000]")
        if self.record is not None:
            _check_extension(self.record, VIDEO_EXTENSIONS, "recording", "a video")
        if self.export is not None:
            _check_extension(self.export, EXPORT_EXTENSIONS, "export", "a detections file")
        if self.segment_s is not None:
            if not _is_number(self.segment_s) or not 0 < self.segment_s <= 86400:
                raise UserError(f"segment length {self.segment_s!r} must be a number of seconds in (0, 86400]")
            if self.record is None:
                raise UserError("--segment needs --record (it cuts the recording into files)")
        if self.adapt_log is not None:
            if self.target_fps is None:
                raise UserError("--adapt-log needs --target-fps (there is nothing to log without a target)")
            _check_extension(self.adapt_log, (".json",), "adaptive log", "a JSON file")
        # each output's own file: one written later would replace another (or the video being read)
        video = f"the source --video {self.source}"
        record = self.record if self.segment_s is None else None  # segments are files of their own
        refuse_clashes([("--record", record), ("--export", self.export), ("counts", self.counts_file),
                        ("--adapt-log", self.adapt_log), ("--events", getattr(self.events, "events", None))],
                       {Path(self.source).resolve(): video} if self.source_kind == "video" else {})
        from app.analytics.count import Shape  # lazily: config is imported everywhere

        for kind in ("lines", "zones"):
            shapes = tuple(Shape(kind[:-1], tuple(c)) for c in getattr(self, kind))  # validates; UserError
            object.__setattr__(self, kind, tuple(s.coords for s in shapes))

    @property
    def counting(self) -> bool:
        return bool(self.lines or self.zones)

    @property
    def counts_file(self) -> str | None:
        """Where the counts go (``counts_file``), when there are lines or zones and an export."""
        return counts_file(self.export) if self.counting and self.export else None

    @property
    def effective_policy(self) -> str:
        if self.policy != "auto":
            return self.policy
        return "drop_stale" if self.source_kind in LIVE_KINDS else "every_frame"

    @property
    def effective_realtime(self) -> bool:
        return self.source_kind == "url" if self.realtime is None else bool(self.realtime)

    @property
    def live(self) -> bool:
        return self.source_kind in LIVE_KINDS

    def with_(self, **changes) -> PipelineConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def check_outputs(self) -> None:
        """Refuse outputs that cannot or must not be written, before any work is done (nothing is
        created or changed): ``UserError`` naming the path and the reason."""
        record = self.record if self.segment_s is None else None
        for path, what in ((record, "recording"), (self.export, "export"), (self.counts_file, "counts"),
                           (self.adapt_log, "adaptive log")):
            if path is not None:
                check_output_path(path, what, overwrite=self.overwrite)
        if self.record is not None and self.segment_s is not None:
            from app.io import segments

            segments.check_outputs(self.record, overwrite=self.overwrite)
        if self.events is not None:
            self.events.check_outputs(self.overwrite)


def counts_file(export: str, name: str | None = None) -> str:
    """The counts file beside the export: ``dets.csv`` → ``dets.counts.json``; stream ``name``'s with
    several streams → ``dets-<name>.counts.json``."""
    p = Path(export)
    return str(p.with_name(f"{p.stem}{f'-{name}' if name else ''}.counts.json"))


def _check_extension(path: str, allowed: tuple[str, ...], what: str, kind: str) -> None:
    ext = Path(path).suffix.lower()
    if ext not in allowed:
        raise UserError(f"{what} output {path} has extension {ext or '(none)'!r}, which is not {kind}; use {', '.join(allowed)}")


def _is_number(value, kinds: type | tuple[type, ...] = (int, float)) -> bool:
    return isinstance(value, kinds) and not isinstance(value, bool)
