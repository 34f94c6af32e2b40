"""The recording sink: annotated frames → H.264 through PyAV, with the source's own timestamps.

Each frame's pts is the source frame's pts in the source's time base, so the recording lasts
exactly as long as the source however slow the detector was, and 30000/1001 stays 29.97 fps.
libx264 with yuv420p needs even sizes: an odd width or height is **padded** with one black
column or row (right / bottom), so no source pixel is lost.

Crash-safe by default: an .mp4/.mov/.m4v is written **fragmented** (the index first, then a
fragment every half second and at every keyframe), and an .mkv closes a cluster every half second,
so a process killed with SIGKILL leaves a file that plays up to its last second; a clean stop gives
a normal file. A write that fails (disk full, file too large) stops this recording only: ``failed``
says why in one line, what was written stays playable, and ``write`` returns False from then on.
"""

from __future__ import annotations

import contextlib
import logging
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from app.errors import first_line
from app.io import Closing
from app.io.paths import ffmpeg_file

# Fragmented MP4: the moov first (empty_moov), a fragment at every keyframe and at least every
# FRAGMENT_S, tfdt from the frames' own dts (frag_discont: a segment that starts at 300 s plays from
# 300 s, not 0). default_base_moof: what browsers' MSE and recent players expect.
FRAGMENT_S = 0.5  # plus the encoder's ~6 frames: a kill loses about a second at most
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+negative_cts_offsets+frag_discont"
FRAGMENTED_EXTENSIONS = (".mp4", ".mov", ".m4v")

log = logging.getLogger(__name__)


class RecordError(RuntimeError):
    """The recording could not be written; the message is one line."""


def admit(recording, pts: int, time_base: Fraction | None) -> int | None:
    """``pts`` in ``recording.time_base`` units if the frame may be written, else None: the
    recording failed (``failed``), or ``pts`` does not increase (counted in ``frames_skipped``).
    A closed recording raises. Shared by ``Recorder`` and ``app.io.segments.SegmentedRecorder``."""
    if recording.failed is not None:
        return None
    if recording._closed:
        raise RecordError(f"the recording {recording.path} is already closed")
    if time_base is not None and Fraction(time_base) != recording.time_base:
        pts = round(pts * Fraction(time_base) / recording.time_base)
    if recording._last_pts is not None and pts <= recording._last_pts:
        recording.frames_skipped += 1
        return None
    return pts


class Recorder(Closing):
    """Writes RGB frames to an H.264 file; call ``close()`` (also on errors — it is idempotent).

    Args:
        path: .mp4, .mkv, .mov or .m4v.
        time_base: the unit of the ``pts`` given to ``write`` (the source's time base).
        rate: nominal frame rate (a hint for the encoder's rate control); None = 25.
        crf, preset: libx264 quality and speed.
        threads: libx264's threads; 0 = its own choice (1.5 × cores, plus lookahead threads).
        fragmented: write a fragmented MP4 (``MOVFLAGS``) that stays playable if the process is
            killed without finishing; None (the default) = yes for .mp4/.mov/.m4v. False gives a
            normal MP4 whose index is written by ``close()`` — a killed run leaves it unreadable.
    """

    def __init__(self, path: str | Path, *, time_base: Fraction, rate: Fraction | None = None, crf: int = 23,
                 preset: str = "veryfast", fragmented: bool | None = None, threads: int = 0) -> None:
        self.path = Path(path)
        self.time_base = Fraction(time_base)
        self.rate = Fraction(rate) if rate else Fraction(25)
        if fragmented is None:
            fragmented = self.path.suffix.lower() in FRAGMENTED_EXTENSIONS
        self.crf, self.preset, self.fragmented, self.threads = crf, preset, fragmented, threads
        self.failed: str | None = None  # one line: why the recording stopped early (disk full, ...)
        self.frames_written = 0
        self.frames_skipped = 0  # frames whose pts did not increase
        self.frames_resized = 0  # frames whose size differed from the first one
        self.padded: tuple[int, int] = (0, 0)  # (columns, rows) of black padding added
        self.size: tuple[int, int] | None = None  # (width, height) of the encoded video
        self._container = None
        self._stream = None
        self._last_pts: int | None = None
        self._good_size = 0  # the file's size after the last frame that was written whole

    def _open(self, width: int, height: int) -> None:
        import av

        self.padded = (width % 2, height % 2)
        self.size = (width + self.padded[0], height + self.padded[1])
        # Hand every muxed packet to the OS at once (the muxer holds a fragment or cluster until it is
        # complete anyway): else its bytes sat in FFmpeg's buffer and a killed run left only the ftyp box.
        options = {"flush_packets": "1"}
        if self.fragmented:
            options.update(movflags=MOVFLAGS, frag_duration=str(int(FRAGMENT_S * 1e6)))
        elif self.path.suffix.lower() == ".mkv":  # a cluster every FRAGMENT_S: a killed .mkv plays to then
            options["cluster_time_limit"] = str(int(FRAGMENT_S * 1000))
        try:
            self._container = av.open(ffmpeg_file(self.path), mode="w", options=options)
        except av.error.FFmpegError as exc:
            raise RecordError(f"cannot create the recording {self.path}: {exc}") from None
        stream = self._container.add_stream("libx264", rate=self.rate)
        stream.width, stream.height = self.size
        stream.pix_fmt = "yuv420p"
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        codec = {"crf": str(self.crf), "preset": self.preset}
        if self.fragmented or options.get("cluster_time_limit"):
            # Fewer frames held in the encoder, where a kill loses them (6, not 11, before the first
            # packet); no B-frames, whose delay shifts every timestamp without an edit list (none in
            # a fragmented MP4); +9 % size on the sample clip (README). The keyframe interval stays
            # x264's: fragments are cut by time (a keyframe a second: 2.3× larger). Each frame thread
            # holds a frame too: at most 4 threads (x264's 1.5 × cores held 24 on 16 cores).
            codec.update({"bf": "0", "rc-lookahead": "5", "threads": str(self.threads or min(4, os.cpu_count() or 1))})
        elif self.threads:
            codec["threads"] = str(self.threads)
        stream.options = codec
        self._stream = stream
        if any(self.padded):
            log.info("recording %s: %dx%d is odd, padded to %dx%d", self.path, width, height, *self.size)

    def write(self, image: np.ndarray, pts: int, time_base: Fraction | None = None) -> bool:
        """Encode one uint8 [H, W, 3] RGB image shown at ``pts`` × ``time_base`` seconds.

        Returns False (and counts it) when ``pts`` does not increase — a frame out of order cannot
        be recorded without breaking the file — and when the recording has failed (``failed``).
        """
        import av

        pts = admit(self, pts, time_base)
        if pts is None:
            return False
        h, w = image.shape[:2]
        if self._container is None:
            self._open(w, h)
        image = self._fit(image)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = int(pts), self.time_base
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (OSError, av.error.FFmpegError) as exc:  # av's errno errors are OSErrors too
            self._fail(exc)
            return False
        self._last_pts = pts
        self.frames_written += 1
        with contextlib.suppress(FileNotFoundError):  # created at the encoder's first packet
            self._good_size = os.stat(self.path).st_size  # everything muxed is on disk (flush_packets)
        return True

    def _fit(self, image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        width, height = self.size
        source_size = (width - self.padded[0], height - self.padded[1])
        if (w, h) != source_size:
            self.frames_resized += 1
            image = cv2.resize(image, source_size, interpolation=cv2.INTER_AREA)
        if any(self.padded):
            image = cv2.copyMakeBorder(image, 0, self.padded[1], 0, self.padded[0], cv2.BORDER_CONSTANT, value=(0, 0, 0))
        return np.ascontiguousarray(image)

    def _close(self) -> None:
        """Flush the encoder and finalise the file."""
        if self._container is None:
            return
        import av

        try:
            try:
                for packet in self._stream.encode():  # flush the frames libx264 still holds
                    self._container.mux(packet)
            finally:
                self._container.close()
        except (OSError, av.error.FFmpegError) as exc:  # not failed before: _fail closes, and only once
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """Stop here: say why in one line and let go of the file. What reached the disk stays —
        fragments and clusters already written play; the trailer is not attempted again."""
        import av

        reason = getattr(exc, "strerror", None) or first_line(exc)
        self.failed = f"recording {self.path} stopped after {self.frames_written} frames: {reason}"
        log.debug("%s", self.failed)
        if not self._closed:
            self._closed = True
            # The trailer cannot be written either: the file ends at its last fragment.
            with contextlib.suppress(OSError, av.error.FFmpegError):
                self._container.close()
        # Cut the half-written fragment (or cluster) off: its truncated last packet stopped PyAV's
        # decoding with an error (InvalidDataError), where now readers end cleanly at the last whole one.
        with contextlib.suppress(OSError):
            if self._good_size and self.path.stat().st_size > self._good_size:
                os.truncate(self.path, self._good_size)
