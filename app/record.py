"""The recording sink: annotated frames → H.264 through PyAV, with the source's own timestamps.

Each frame's pts is the source frame's pts in the source's time base, so the recording lasts
exactly as long as the source however slow the detector was, and 30000/1001 stays 29.97 fps.
libx264 with yuv420p needs even sizes: an odd width or height is **padded** with one black
column or row (right / bottom), so no source pixel is lost.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class RecordError(RuntimeError):
    """The recording could not be written; the message is one line."""


class Recorder:
    """Writes RGB frames to an H.264 file; call ``close()`` (also on errors — it is idempotent).

    Args:
        path: .mp4, .mkv, .mov or .m4v.
        time_base: the unit of the ``pts`` given to ``write`` (the source's time base).
        rate: nominal frame rate (a hint for the encoder's rate control); None = 25.
        crf, preset: libx264 quality and speed.
        threads: libx264's threads; 0 = its own choice (1.5 × cores, plus lookahead threads).
        fragmented: write a fragmented MP4 (``frag_keyframe+empty_moov``) that stays playable
            even if the process is killed without finishing; the default is a normal MP4,
            finalised by ``close()``, which every exit path of the pipeline calls.
    """

    def __init__(self, path: str | Path, *, time_base: Fraction, rate: Fraction | None = None, crf: int = 23,
                 preset: str = "veryfast", fragmented: bool = False, threads: int = 0) -> None:
        self.path = Path(path)
        self.time_base = Fraction(time_base)
        self.rate = Fraction(rate) if rate else Fraction(25)
        self.crf, self.preset, self.fragmented, self.threads = crf, preset, fragmented, threads
        self.frames_written = 0
        self.frames_skipped = 0  # frames whose pts did not increase
        self.frames_resized = 0  # frames whose size differed from the first one
        self.padded: tuple[int, int] = (0, 0)  # (columns, rows) of black padding added
        self.size: tuple[int, int] | None = None  # (width, height) of the encoded video
        self._container = None
        self._stream = None
        self._last_pts: int | None = None
        self._closed = False

    def _open(self, width: int, height: int) -> None:
        import av

        self.padded = (width % 2, height % 2)
        self.size = (width + self.padded[0], height + self.padded[1])
        # negative_cts_offsets: without an edit list (none in a fragmented MP4) B-frame reordering
        # would otherwise start the video at the encoder's delay (0.2 s at 10 fps), not at 0.
        flags = "frag_keyframe+empty_moov+default_base_moof+negative_cts_offsets"
        options = {"movflags": flags} if self.fragmented else {}
        try:
            self._container = av.open(str(self.path), mode="w", options=options)
        except av.error.FFmpegError as exc:
            raise RecordError(f"cannot create the recording {self.path}: {exc}") from None
        stream = self._container.add_stream("libx264", rate=self.rate)
        stream.width, stream.height = self.size
        stream.pix_fmt = "yuv420p"
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        stream.options = {"crf": str(self.crf), "preset": self.preset, **({"threads": str(self.threads)} if self.threads else {})}
        self._stream = stream
        if any(self.padded):
            log.info("recording %s: %dx%d is odd, padded to %dx%d", self.path, width, height, *self.size)

    def write(self, image: np.ndarray, pts: int, time_base: Fraction | None = None) -> bool:
        """Encode one uint8 [H, W, 3] RGB image shown at ``pts`` × ``time_base`` seconds.

        Returns False (and counts it) when ``pts`` does not increase — a frame out of order cannot
        be recorded without breaking the file.
        """
        import av

        if self._closed:
            raise RecordError(f"the recording {self.path} is already closed")
        if time_base is not None and Fraction(time_base) != self.time_base:
            pts = round(pts * Fraction(time_base) / self.time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            self.frames_skipped += 1
            return False
        h, w = image.shape[:2]
        if self._container is None:
            self._open(w, h)
        image = self._fit(image)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = int(pts), self.time_base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._last_pts = pts
        self.frames_written += 1
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

    def close(self) -> None:
        """Flush the encoder and finalise the file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():  # flush the frames libx264 still holds
                self._container.mux(packet)
        finally:
            self._container.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
