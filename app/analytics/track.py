"""Multi-object tracking: ByteTrack from the ``trackers`` package (Apache-2.0), behind our types.

``Tracker.update(detections, timestamp_s)`` takes the detector's ``Detections`` of one frame and
returns the same detections, in the same order, with ``track_ids`` set. The conversion to
supervision's ``sv.Detections`` (what ``trackers`` speaks) happens here and nowhere else.

Time: every update carries the frame's own timestamp, so the Kalman filter predicts over the real
time step (frames 0, 3, 4, 9 of a camera are steps of 3, 1 and 5 frames, and an object keeps its ID
across the dropped ones) and a lost track expires after ``LOST_TRACK_S`` seconds.

``Trails`` keeps the recent centre points of each track for drawing.

``trackers`` is installed with ``--no-deps``: its ``opencv-python`` dependency's Qt clashes with PyQt6.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from app.errors import UserError
from detector.detections import Detections

LOST_TRACK_S = 1.5  # an ID is retired after this long without a matching detection (a shorter miss keeps it)
ACTIVATION_SCORE = 0.6  # the lowest score that starts a new track
HIGH_SCORE = 0.6  # detections at or above are matched first; lower ones only extend tracks (ByteTrack's 2nd stage)
MIN_IOU = 0.1  # the lowest IoU between a track's predicted box and a detection that still matches
CONFIRM_FRAMES = 3  # detections in a row before a new track gets an ID (-1 until then): no ID for a one-frame blip
TRAIL_S = 2.0  # how much history a trail shows
TRAIL_POINTS = 64  # a bound on the points kept per trail


def _bytetrack_class():
    """trackers.ByteTrackTracker, imported on first use (the package takes ~1 s to import)."""
    try:
        from trackers import ByteTrackTracker
    except ImportError as exc:
        raise UserError(f"tracking needs the 'trackers' package, which is not installed ({exc}); "
                        "install it with: pip install --no-deps 'trackers==2.6.1'") from None
    return ByteTrackTracker


class Tracker:
    """ByteTrack over our ``Detections``, timed by the frames' own timestamps.

    Args:
        frame_rate: the source's nominal frames per second: the unit of the motion model's step
            (a gap of 0.3 s at 10 fps is 3 steps). None = 30.
    """

    def __init__(self, frame_rate: float | None = None) -> None:
        rate = float(frame_rate) if frame_rate else 30.0
        if not (np.isfinite(rate) and rate > 0):
            raise ValueError(f"frame rate {frame_rate!r} must be a positive number")
        self.frame_rate = rate
        # trackers counts its lost-track buffer in frames of a 30 fps video; with timestamps it
        # becomes buffer / 30 seconds.
        self._tracker = _bytetrack_class()(
            lost_track_buffer=max(1, round(LOST_TRACK_S * 30)), frame_rate=rate,
            track_activation_threshold=ACTIVATION_SCORE, minimum_consecutive_frames=CONFIRM_FRAMES,
            minimum_iou_threshold=MIN_IOU, high_conf_det_threshold=HIGH_SCORE)
        self._last_t: float | None = None
        self._offset = 0.0
        self.last_ms = 0.0

    def update(self, detections: Detections, timestamp_s: float) -> Detections:
        """Associate one frame's detections with the tracks.

        Args:
            detections: boxes [N, 4] (x1, y1, x2, y2) in frame pixels, scores [N], class ids [N].
            timestamp_s: the frame's time in seconds (source timestamps). A time that does not
                increase (a source restarted or looped) restarts the tracker's clock from here.

        Returns:
            ``detections`` in the same order with ``track_ids`` int64 [N]: a track's ID (≥ 0), or
            -1 for a detection not (yet) part of a confirmed track.
        """
        import supervision as sv

        start = time.perf_counter()
        t = float(timestamp_s) + self._offset
        if self._last_t is not None and t <= self._last_t:
            # trackers skips an update whose time does not increase (and warns). A looped file or
            # a restarted clock is not a reason to stop tracking: shift the clock so that this
            # frame is one nominal frame after the last, and keep the real steps from here on.
            self._offset += self._last_t + 1.0 / self.frame_rate - t
            t = self._last_t + 1.0 / self.frame_rate
        self._last_t = t
        ids = np.full(len(detections), -1, np.int64)
        sv_det = sv.Detections(xyxy=detections.boxes.astype(np.float32), confidence=detections.scores,
                               class_id=detections.class_ids, data={"index": np.arange(len(detections))})
        tracked = self._tracker.update(sv_det, timestamp=t)
        if len(tracked):
            # trackers may reorder the detections; put each ID back on its own row.
            ids[np.asarray(tracked.data["index"], np.int64)] = np.asarray(tracked.tracker_id, np.int64)
        self.last_ms = (time.perf_counter() - start) * 1e3
        return detections.with_track_ids(ids)

    def alive_ids(self) -> set[int]:
        """IDs of the confirmed tracks the tracker still holds (matched now, or lost for less than
        ``lost_track_s``)."""
        return {int(t.tracker_id) for t in self._tracker.tracks if t.tracker_id >= 0}


class Trails:
    """The recent centre points of every track (``TRAIL_S``, at most ``TRAIL_POINTS``), for drawing
    (oldest first)."""

    def __init__(self) -> None:
        self._points: dict[int, deque[tuple[float, float, float]]] = {}

    def add(self, detections: Detections, timestamp_s: float, alive: set[int]) -> None:
        """Append the centre of each tracked box; forget tracks that are no longer ``alive``."""
        if detections.track_ids is not None:
            for box, tid in zip(detections.boxes, detections.track_ids, strict=True):
                if tid < 0:
                    continue
                cx, cy = float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2
                self._points.setdefault(int(tid), deque(maxlen=TRAIL_POINTS)).append((timestamp_s, cx, cy))
        for tid in list(self._points):
            points = self._points[tid]
            while points and points[0][0] < timestamp_s - TRAIL_S:
                points.popleft()
            if tid not in alive or not points:
                del self._points[tid]

    def snapshot(self) -> dict[int, np.ndarray]:
        """{track id: float32 [K, 2] (x, y) centres in frame pixels, oldest first}."""
        return {tid: np.array([(x, y) for _, x, y in pts], np.float32) for tid, pts in self._points.items()}

    def clear(self) -> None:
        self._points.clear()
