"""What travels between an ingest actor and a detector replica, and the batch function a replica runs.

Ray-free (tested without a cluster). The replica's ``@serve.batch`` method hands its list of
``FramePayload`` to ``detect_batch`` and returns one ``FrameReply`` (or the frame's own exception)
per frame, in the same order.

**Frames of different sizes are never batched together**: torchvision pads a batch's images to the
largest, which changes a frame's detections slightly, so ``detect_batch`` makes one ``detect`` call
per frame size and a frame's detections do not depend on which other streams shared its batch.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from detector.config import check_probability, check_proposals
from detector.detections import Detections
from detector.stages import StageTimes, detect_timed

TRANSPORTS = ("raw", "jpeg")
JPEG_QUALITY = 90


@dataclass(frozen=True)
class FramePayload:
    """One frame on its way to a replica; exactly one of ``image`` and ``jpeg`` is set.

    Attributes:
        image: uint8 [H, W, 3], RGB (the ``raw`` transport). Ray stores an array this large in the
            node's shared-memory object store; a replica on the same node maps it without a copy.
        jpeg: the frame as JPEG bytes (the ``jpeg`` transport: ~15× smaller, for frames that cross
            the network; lossy, so detections differ a little from those on the raw frame).
    """

    image: np.ndarray | None = None
    jpeg: bytes | None = None

    def __post_init__(self) -> None:
        if (self.image is None) == (self.jpeg is None):
            raise ValueError("a FramePayload holds exactly one of image and jpeg")
        if self.image is not None:
            _check_image(self.image)

    @classmethod
    def encode(cls, image: np.ndarray, transport: str = "raw") -> FramePayload:
        """Wrap ``image`` (uint8 [H, W, 3], RGB) for ``transport`` ("raw" or "jpeg")."""
        if transport == "raw":
            return cls(image=np.ascontiguousarray(image))
        if transport == "jpeg":
            import cv2

            _check_image(image)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise ValueError(f"a {image.shape} frame could not be JPEG-encoded")
            return cls(jpeg=buf.tobytes())
        raise ValueError(f"transport {transport!r} is unknown; expected one of {', '.join(TRANSPORTS)}")

    def decode(self) -> np.ndarray:
        """The frame as uint8 [H, W, 3], RGB (read-only when it came from the object store)."""
        if self.image is not None:
            return self.image
        import cv2

        bgr = cv2.imdecode(np.frombuffer(self.jpeg, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"a {len(self.jpeg)}-byte JPEG payload could not be decoded")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    @property
    def nbytes(self) -> int:
        return self.image.nbytes if self.image is not None else len(self.jpeg)


@dataclass(frozen=True)
class FrameReply:
    """A replica's answer for one frame.

    Attributes:
        detections: boxes in the frame's pixels.
        times: this frame's share of the replica's work (its size group's stage times ÷ the group's
            frames; decoding a JPEG counts as preprocessing).
        proposals: RPN proposals kept for this frame.
        batch_size: frames in the replica batch this frame was part of (all sizes).
        replica: which replica answered.
    """

    detections: Detections
    times: StageTimes = field(default_factory=StageTimes)
    proposals: int = 0
    batch_size: int = 1
    replica: str = ""


def detect_batch(detector, payloads: Sequence[FramePayload], *,
                 replica: str = "") -> list[FrameReply | Exception]:
    """Detect every payload with ``detector`` (a ``detector.Detector``): one ``detect`` call per
    frame size, replies in the order of ``payloads``.

    A batch holds frames of several streams: a frame that cannot be decoded, or a size whose
    ``detect`` raises, gets that exception in its slot (``RemoteDetector`` raises it for its
    stream) and the other frames are still answered."""
    t = time.perf_counter()
    replies: list[FrameReply | Exception | None] = [None] * len(payloads)
    images: dict[int, np.ndarray] = {}
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, payload in enumerate(payloads):
        try:
            images[i] = payload.decode()
        except Exception as exc:  # the frame's own error, in its slot
            replies[i] = exc
        else:
            groups.setdefault(images[i].shape, []).append(i)
    decode_ms = (time.perf_counter() - t) * 1e3 / max(1, len(payloads))
    for indices in groups.values():
        try:
            timed = detect_timed(detector, [images[i] for i in indices])
        except Exception as exc:  # this size's frames fail, the other sizes go on
            for i in indices:
                replies[i] = exc
            continue
        share = {k: v / len(indices) for k, v in asdict(timed.times).items()}
        share["preprocess"] += decode_ms
        counts = timed.proposals
        for j, i in enumerate(indices):
            replies[i] = FrameReply(timed.detections[j], StageTimes(**share), counts[j] if j < len(counts) else 0,
                                    len(payloads), replica)
    return replies  # type: ignore[return-value]  # every slot was filled above


@dataclass(frozen=True)
class Knobs:
    """The settings that can change on a running deployment, applied from the next batch on."""

    proposals: int
    score_threshold: float | None  # None: each replica's model keeps its own

    def __post_init__(self) -> None:
        check_proposals(self.proposals, "proposals")
        if self.score_threshold is not None:
            object.__setattr__(self, "score_threshold", check_probability(self.score_threshold, "score threshold"))

    def apply(self, detector) -> None:
        detector.set_proposal_count(self.proposals)
        if self.score_threshold is not None:
            detector.set_score_threshold(self.score_threshold)


class ReplicaLoad:
    """How busy a replica is: batches, frames, mean batch size and the fraction of the last
    ``window_s`` seconds spent detecting. Thread-safe."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        self._spans: deque[tuple[float, float, int]] = deque()  # (start, end, frames) per batch
        self.batches = 0
        self.frames = 0
        self.started = time.monotonic()

    def add(self, start: float, end: float, frames: int) -> None:
        with self._lock:
            self._spans.append((start, end, frames))
            self.batches += 1
            self.frames += frames
            while self._spans and self._spans[0][1] < end - self.window_s:
                self._spans.popleft()

    def snapshot(self, now: float | None = None) -> dict:
        """``batches``, ``frames``, ``mean_batch`` (whole run); ``busy`` (0..1), ``fps`` and ``batch``
        (mean frames per batch) over the window."""
        now = time.monotonic() if now is None else now
        with self._lock:
            spans = [s for s in self._spans if s[1] >= now - self.window_s]
            batches, frames = self.batches, self.frames
        window = min(self.window_s, max(1e-9, now - self.started))
        busy = sum(min(end, now) - max(start, now - self.window_s) for start, end, _ in spans)
        return {
            "batches": batches,
            "frames": frames,
            "mean_batch": frames / batches if batches else 0.0,
            "busy": max(0.0, min(1.0, busy / window)),
            "fps": sum(n for *_, n in spans) / window,
            "batch": sum(n for *_, n in spans) / len(spans) if spans else 0.0,
        }


def _check_image(image) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"a frame must be a uint8 array [H, W, 3]; got {got}")
