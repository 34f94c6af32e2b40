"""``RemoteDetector``: the detector deployment seen through the ``Detector`` interface.

The ingest actor runs the product's own ``Pipeline`` with this object in place of a local detector.
Every frame of a ``detect`` call is its own request, so ``@serve.batch`` can batch frames of several
streams; the replies come back in the frames' order.

A replica that dies (killed, out of memory, its node lost) fails the requests it held and Serve
starts a new one; those frames are sent again until ``retry_for_s`` has passed, so a file stream
still gets every frame detected. Ray-free: the caller passes the submit function and the exceptions
that mean "the replica is gone".
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import fields

import numpy as np

from app.serve.batching import FramePayload, FrameReply
from detector.detections import Detections
from detector.stages import StageTimes, Timed

log = logging.getLogger(__name__)

REPLY_TIMEOUT_S = 120.0  # how long one request may take (a healthy replica answers in well under a second)


class DeploymentError(RuntimeError):
    """The deployment did not answer (no replica came back in time); the message is one line."""


class RemoteDetector:
    """Sends frames to a detector deployment and waits for their detections.

    Args:
        submit: ``fn(FramePayload) -> response`` whose ``result(timeout_s=...)`` returns a
            ``FrameReply`` (a Serve ``DeploymentHandle.remote``).
        transport: "raw" or "jpeg" (see ``FramePayload``).
        retryable: exception types after which a frame is sent again (a replica died).
        retry_for_s: how long one frame keeps being retried before the stream fails.
    """

    def __init__(self, submit: Callable[[FramePayload], object], *, transport: str = "raw",
                 retryable: tuple[type[BaseException], ...] = (), retry_for_s: float = 120.0) -> None:
        self.submit = submit
        self.transport = transport
        self.retryable = retryable
        self.retry_for_s = retry_for_s
        self.recent_batch_sizes: deque[int] = deque(maxlen=30)  # replica batch of each recent frame
        self.retries = 0
        self._closed = threading.Event()

    def detect(self, frames: Sequence[np.ndarray] | np.ndarray, **kwargs) -> list[Detections]:
        """One ``Detections`` per frame (uint8 [H, W, 3] RGB), in order; all frames are in flight at once."""
        return self.detect_timed(frames, **kwargs).detections

    def detect_timed(self, frames: Sequence[np.ndarray] | np.ndarray, **kwargs) -> Timed:
        """``detect`` with the replicas' stage times (summed over the frames) and proposals per frame."""
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            frames = [frames]
        payloads = [FramePayload.encode(f, self.transport) for f in frames]
        pending = [self.submit(p) for p in payloads]
        replies = [self._reply(response, payload) for response, payload in zip(pending, payloads, strict=True)]
        self.recent_batch_sizes.extend(r.batch_size for r in replies)
        total = {f.name: sum((getattr(r.times, f.name) for r in replies), 0.0) for f in fields(StageTimes)}
        return Timed([r.detections for r in replies], StageTimes(**total), [r.proposals for r in replies])

    def _reply(self, response, payload: FramePayload) -> FrameReply:
        deadline = None
        while True:
            try:
                reply = response.result(timeout_s=REPLY_TIMEOUT_S)
                break
            except TimeoutError:
                raise DeploymentError(f"the detector deployment gave no reply within {REPLY_TIMEOUT_S:g} s") from None
            except self.retryable as exc:
                now = time.monotonic()
                deadline = deadline or now + self.retry_for_s
                if now >= deadline or self._closed.is_set():
                    raise DeploymentError(f"no detector replica answered for {self.retry_for_s:g} s "
                                          f"(last error: {type(exc).__name__})") from None
                self.retries += 1
                log.info("a replica failed (%s); sending the frame again", type(exc).__name__)
                self._closed.wait(0.2)  # give the controller a moment to route around the dead replica
                response = self.submit(payload)
        if isinstance(reply, Exception):  # this frame failed on a live replica (detect_batch): not retried
            raise reply
        return reply

    def close(self) -> None:
        """Stop retrying (the stream is being stopped)."""
        self._closed.set()

    # The pipeline's live controls call these; the knobs live on the deployment (ServeSession.set_knobs).
    def set_proposal_count(self, n: int) -> None:
        raise NotImplementedError(_shared("the proposal count"))

    def set_score_threshold(self, threshold: float) -> None:
        raise NotImplementedError(_shared("the score threshold"))

    def set_classes(self, names) -> None:
        raise NotImplementedError(_shared("the classes kept"))


def _shared(what: str) -> str:
    return f"{what} is a setting of the shared deployment, not of one stream: use ServeSession.set_knobs"
