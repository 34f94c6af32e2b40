"""Frame sources: video files and stream URLs (PyAV), cameras (OpenCV), image folders.

A source is opened — and every problem with it reported as one ``UserError`` line — when it is
constructed, on the caller's thread; ``frames()`` then yields ``Frame`` records and is meant to run
on the pipeline's reader thread. Frames that fail to decode are skipped, counted in
``bad_frames`` and reported; they are never hidden.

``LatestFrame`` is the one-slot buffer of the ``drop_stale`` policy.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

from app.config import PipelineConfig
from app.errors import UserError
from app.frames import Frame
from app.io import Closing
from app.io.paths import ffmpeg_file

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DEFAULT_TIME_BASE = Fraction(1, 90_000)  # MPEG's clock, for sources without their own
NAMED_BAD_IMAGES = 3  # unreadable images of a folder named one by one in the notes
MAX_BAD_IN_A_ROW = 250  # consecutive undecodable packets after which a file is given up


class SourceError(UserError):
    """The source cannot be opened or stopped delivering frames; the message is one line."""


class SourceUnavailable(SourceError):
    """The source exists but cannot be reached now (a connection refused or timed out, a camera
    busy or silent): worth trying again, unlike a missing file or a malformed URL."""


class Source(Closing):
    """What every source tells about itself. Subclasses implement ``frames()``.

    Attributes:
        name: the path, URL or camera shown to the user.
        live: frames arrive in real time (camera, URL) rather than on demand (file, folder).
        rate: nominal frames per second, exact; None when unknown.
        total_frames: frames expected (header or file count); None when unknown (no ETA then).
        bad_frames: frames or packets that could not be decoded so far.
        notes: one-line remarks for the user (missing duration, guessed timestamps, ...).
    """

    name: str = ""
    live: bool = False
    rate: Fraction | None = None
    total_frames: int | None = None
    # close() may be called while frames() runs on another thread: it only signals (app/io/reconnect.py).
    # Not so for PyAV and OpenCV sources, whose close() must wait until their reader has let go.
    thread_safe_close: bool = False

    def __init__(self) -> None:
        self.bad_frames = 0
        self.notes: list[str] = []
        self._closed = threading.Event()

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file or device; safe to call twice and from another thread."""
        self._closed.set()


# --------------------------------------------------------------------------------- files and URLs
class FileSource(Source):
    """A video file (or, from ``UrlSource``, a stream) decoded by PyAV, with its own timestamps.

    Any container and codec FFmpeg decodes; frames are converted to RGB whatever their pixel
    format (4:2:0, 4:4:4, 10-bit). Timestamps are the stream's pts × time_base, relative to the
    first frame; frames without pts get index / rate (and a note). A timestamp that does not
    increase (repeated, or a clock that starts again) is moved to one frame after the last.
    """

    _open_error: type[SourceError] = SourceError  # what a failed av.open raises

    def __init__(self, path: str, *, timeout_s: float | tuple[float, float] | None = None, threads: int = 0) -> None:
        super().__init__()
        self.name = str(path)
        self._check_path(path)
        import av  # local: keeps `run.py --help` fast

        self._av = av
        options = {"timeout": timeout_s} if timeout_s else {}
        try:
            target = self.name if self.live else ffmpeg_file(self.name)  # a URL names its protocol
            self.container = av.open(target, mode="r", metadata_errors="ignore", **options)
        except av.error.FileNotFoundError:
            raise SourceError(f"{self.name} does not exist") from None
        except av.error.ProtocolNotFoundError:  # a misspelt scheme: bad input, not a stream to retry
            raise SourceError(f"URL {self.name}: FFmpeg has no protocol {self.name.split(':', 1)[0]!r} "
                              "(expected rtsp://, rtmp://, http://, https:// or udp://)") from None
        except av.error.FFmpegError as exc:
            raise self._open_error(self._open_failure(getattr(exc, "strerror", None) or str(exc))) from None
        try:
            self._init_stream(threads)
        except BaseException:
            self.container.close()
            raise

    def _check_path(self, path: str) -> None:
        p = Path(path)
        if not p.exists():
            raise SourceError(f"video file {path} does not exist")
        if p.is_dir():
            raise SourceError(f"{path} is a directory, not a video file (for a folder of images use --images {path})")
        if p.stat().st_size == 0:
            raise SourceError(f"video file {path} is empty (0 bytes)")
        if not os.access(p, os.R_OK):
            raise SourceError(f"video file {path} is not readable (permissions)")

    def _open_failure(self, reason: str) -> str:
        head = b""
        if Path(self.name).is_file():
            with open(self.name, "rb") as f:  # its first bytes, not the whole file (gigabytes)
                head = f.read(64)
        if head and _looks_like_text(head):
            return f"{self.name} is a text file, not a video"
        if head[4:8] == b"ftyp":
            return (f"{self.name} cannot be read: an MP4 without its index ('moov' atom) — "
                    f"probably cut off before the recording was finalised ({reason})")
        return f"{self.name} is not a video FFmpeg can read ({reason})"

    def _init_stream(self, threads: int) -> None:
        if not self.container.streams.video:
            kinds = ", ".join(sorted({s.type for s in self.container.streams})) or "no streams at all"
            raise SourceError(f"{self.name} has no video stream (it holds {kinds})")
        stream = self.container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads: decoding keeps up with the detector
        if threads:  # 0 = FFmpeg's choice (cores + 1); the thread budget may ask for fewer
            stream.thread_count = threads
        self.stream = stream
        self.time_base = Fraction(stream.time_base) if stream.time_base else DEFAULT_TIME_BASE
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.rate = Fraction(rate) if rate else None
        self.width, self.height = stream.codec_context.width, stream.codec_context.height
        self.total_frames = stream.frames or None
        seconds = (stream.duration * self.time_base if stream.duration
                   else Fraction(self.container.duration or 0, 1_000_000))
        if self.total_frames is None and self.rate and seconds:
            self.total_frames = max(1, round(seconds * self.rate))
        if self.total_frames is None and not self.live:
            self.notes.append(f"{self.name} has no duration in its header: frames are read to the end, no ETA")
        if self.rate is None:
            self.notes.append(f"{self.name} states no frame rate; frames without timestamps get 25 fps")

    def frames(self) -> Iterator[Frame]:
        av = self._av
        stream, index, shift, last_pts = self.stream, 0, None, None
        step = max(1, round(1 / (self.rate or Fraction(25)) / self.time_base))  # one frame, in pts units
        bad_in_a_row, decoded_any, gave_up = 0, False, False
        packets = self.container.demux(stream)
        while not self._closed.is_set():
            try:
                packet = next(packets)
            except (StopIteration, av.error.EOFError):
                break
            except OSError as exc:  # av.error.OSError: the file or connection failed, not the data
                if self._closed.is_set():
                    break
                reason = getattr(exc, "strerror", None) or str(exc)
                raise SourceError(f"reading {self.name} failed after {index} frames: {reason}") from None
            except av.error.FFmpegError as exc:
                # A broken container chunk: count it and resume demuxing after it.
                bad_in_a_row += 1
                if gave_up := self._bad(exc, "demux", bad_in_a_row):
                    break
                packets = self.container.demux(stream)
                continue
            try:
                decoded = packet.decode()  # the final empty packet flushes the decoder
            except av.error.FFmpegError as exc:
                if self._closed.is_set():
                    break
                bad_in_a_row += 1
                if gave_up := self._bad(exc, "decode", bad_in_a_row):
                    break
                continue
            for vf in decoded:
                bad_in_a_row, decoded_any = 0, True
                pts = self._synthetic_pts(index) if vf.pts is None else vf.pts
                if shift is None:
                    shift = -pts  # relative to the first frame
                pts += shift
                if last_pts is not None and pts <= last_pts:
                    # A repeated timestamp, or a clock that restarts (files joined): one frame after
                    # the last, and the frames after it keep their own steps from there.
                    shift += last_pts + step - pts
                    pts = last_pts + step
                last_pts = pts
                image = vf.to_ndarray(format="rgb24")
                yield Frame(index, int(pts), self.time_base, image, time.monotonic())
                index += 1
        if not decoded_any and self.bad_frames and not self._closed.is_set():
            raise SourceError(f"no frame of {self.name} could be decoded ({self.bad_frames} bad packets): the file is corrupt")
        stated = 0 if self.live or self._closed.is_set() or gave_up else stream.frames  # the header's count
        if stated and index + self.bad_frames < stated - max(2, stated // 100):  # cut off: frames missing
            self.notes.append(f"{self.name} ended after {index} of the {stated} frames its header states "
                              "(the file may be cut off)")

    def _bad(self, exc: Exception, where: str, in_a_row: int) -> bool:
        """Count a packet that failed to demux or decode; True (with a note) when too many came in a row."""
        self.bad_frames += 1
        if self.bad_frames == 1:
            log.debug("%s: %s error: %s", self.name, where, exc)
        if in_a_row <= MAX_BAD_IN_A_ROW:
            return False
        self.notes.append(f"{self.name}: gave up after {MAX_BAD_IN_A_ROW} bad packets in a row ({where} errors)")
        return True

    def _synthetic_pts(self, index: int) -> int:
        if not any("without timestamps" in n for n in self.notes):
            self.notes.append(f"{self.name}: frames without timestamps are timed at {float(self.rate or 25):g} fps")
        return round(Fraction(index) / (self.rate or Fraction(25)) / self.time_base)

    def close(self) -> None:
        super().close()
        container = getattr(self, "container", None)
        if container is not None:
            try:
                container.close()
            except Exception as exc:  # closing a half-read network stream can fail; nothing is lost
                log.debug("closing %s: %s", self.name, exc)


class UrlSource(FileSource):
    """A network stream (rtsp://, rtmp://, http(s)://, udp://...) through PyAV, with a timeout.

    ``read_timeout_s`` bounds each read once open (default: ``timeout_s``); a stream silent that long
    ends. ``finite`` is True when the server stated the stream's length in bytes (a file served
    over HTTP): its end is the end, whereas a live stream that ends has dropped.
    """

    live = True
    _open_error = SourceUnavailable

    def __init__(self, url: str, *, timeout_s: float = 10.0, read_timeout_s: float | None = None,
                 threads: int = 0) -> None:
        self._timeout = timeout_s
        super().__init__(url, timeout_s=(timeout_s, read_timeout_s or timeout_s), threads=threads)
        self.finite = (getattr(self.container, "size", -1) or -1) > 0

    def _check_path(self, path: str) -> None:
        if "://" not in path:
            raise SourceError(f"URL {path!r} has no scheme; expected rtsp://, http://, https://, rtmp:// or udp://")

    def _open_failure(self, reason: str) -> str:
        return f"cannot open stream {self.name} within {self._timeout:g} s: {reason}"


# --------------------------------------------------------------------------------- image folders
class ImageFolderSource(Source):
    """The images of a folder, or a glob pattern, in name order, timed at ``fps``."""

    def __init__(self, pattern: str, *, fps: float = 10.0) -> None:
        super().__init__()
        self.name = pattern
        p = Path(pattern)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        elif any(ch in pattern for ch in "*?["):
            files = sorted(Path(f) for f in glob.glob(pattern) if Path(f).suffix.lower() in IMAGE_EXTENSIONS)
        elif p.exists():
            raise SourceError(f"{pattern} is a file; --images takes a folder or a glob such as 'frames/*.jpg'")
        else:
            raise SourceError(f"image folder {pattern} does not exist")
        if not files:
            raise SourceError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {pattern}")
        self.files = files
        self.rate = Fraction(fps).limit_denominator(1001)
        self.time_base = 1 / self.rate
        self.total_frames = len(files)

    def frames(self) -> Iterator[Frame]:
        import cv2

        index = 0
        for path in self.files:
            if self._closed.is_set():
                break
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                self.bad_frames += 1
                if self.bad_frames <= NAMED_BAD_IMAGES:  # a broken folder of thousands: a few named, then a count
                    self.notes.append(f"{path} could not be read as an image; skipped")
                continue
            yield Frame(index, index, self.time_base, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.monotonic(), str(path))
            index += 1
        if self.bad_frames > NAMED_BAD_IMAGES:
            more = self.bad_frames - NAMED_BAD_IMAGES
            self.notes.append(f"{more} more images in {self.name} could not be read; skipped")
        if index == 0 and self.bad_frames and not self._closed.is_set():
            raise SourceError(f"none of the {len(self.files)} images in {self.name} could be read "
                              f"(first: {self.files[0].name})")


# --------------------------------------------------------------------------------- cameras
class CameraSource(Source):
    """A camera through OpenCV (V4L2 on Linux); timestamps are the capture clock."""

    live = True
    time_base = DEFAULT_TIME_BASE

    def __init__(self, device: str, *, timeout_s: float = 10.0) -> None:
        super().__init__()
        import cv2

        self._cv2 = cv2
        self.name = f"camera {device}"
        self._timeout = timeout_s
        target: int | str = int(device) if device.isdigit() else device
        if os.name == "posix" and Path("/dev").is_dir() and os.uname().sysname == "Linux":
            node = Path(f"/dev/video{device}") if isinstance(target, int) else Path(device)
            if not node.exists():
                found = sorted(str(p) for p in Path("/dev").glob("video*"))
                have = f"found {', '.join(found)}" if found else "this machine has no camera (/dev/video* is empty)"
                raise SourceError(f"camera {device} does not exist ({node} is missing); {have}")
        _quiet_opencv(cv2)
        api = cv2.CAP_V4L2 if os.name == "posix" and isinstance(target, int) else cv2.CAP_ANY
        self.capture = cv2.VideoCapture(target, api)
        if not self.capture.isOpened():
            self.capture.release()
            raise SourceUnavailable(f"camera {device} could not be opened (busy, or not a capture device)")
        rate = self.capture.get(cv2.CAP_PROP_FPS)
        self.rate = Fraction(rate).limit_denominator(1001) if rate and rate > 0 else None

    def frames(self) -> Iterator[Frame]:
        cv2, index, start, last_ok = self._cv2, 0, None, time.monotonic()
        while not self._closed.is_set():
            ok, bgr = self.capture.read()
            now = time.monotonic()
            if not ok or bgr is None:
                self.bad_frames += 1
                if now - last_ok > self._timeout:
                    raise SourceUnavailable(f"{self.name} delivered no frame for {self._timeout:g} s")
                time.sleep(0.01)
                continue
            last_ok = now
            start = now if start is None else start
            pts = round((now - start) / self.time_base)
            yield Frame(index, pts, self.time_base, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), now)
            index += 1

    def close(self) -> None:
        super().close()
        capture = getattr(self, "capture", None)
        if capture is not None:
            capture.release()


def open_plain_source(config: PipelineConfig) -> Source:
    """The source ``config`` names, opened, without reconnection."""
    kind, target = config.source_kind, config.source
    if kind == "video":
        return FileSource(target, threads=config.decode_threads)
    if kind == "url":
        return UrlSource(target, timeout_s=config.open_timeout_s, threads=config.decode_threads)
    if kind == "images":
        return ImageFolderSource(target, fps=config.image_fps)
    return CameraSource(target, timeout_s=config.open_timeout_s)


# --------------------------------------------------------------------------------- drop_stale
class LatestFrame:
    """A one-slot buffer for live sources: ``put`` replaces an untaken frame (and counts it as
    dropped), ``get`` takes the newest. The detector therefore always sees the freshest frame
    and latency cannot build up, however slow inference is (Ultralytics' ``LoadStreams`` idea).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False
        self.dropped = 0

    def put(self, frame: Frame, *, count_drop: bool = True) -> None:
        with self._cond:
            if self._frame is not None and count_drop:
                self.dropped += 1
            self._frame = frame
            self._cond.notify()

    def get(self, timeout: float) -> Frame | None:
        """The newest frame, waiting at most ``timeout`` s; None on timeout or when closed and empty."""
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame

    def close(self) -> None:
        """No more frames will come; wakes a waiting ``get``."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return int(self._frame is not None)


def _looks_like_text(head: bytes) -> bool:
    """Printable ASCII and tabs or line breaks only."""
    return all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def _quiet_opencv(cv2) -> None:
    """OpenCV prints its own warnings for missing devices; ours are the one line the user sees."""
    with contextlib.suppress(AttributeError):  # older OpenCV builds lack cv2.utils.logging
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
