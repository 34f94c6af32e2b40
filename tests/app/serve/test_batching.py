"""The batching adapter without Ray: payloads, one detect call per frame size, replies in order and
equal to the detector's own answer for each frame alone; knobs; replica load."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.serve.batching import FramePayload, FrameReply, Knobs, ReplicaLoad, detect_batch
from detector.config import ConfigError
from tests.matching import assert_same_detections


class CountingDetector:
    """Passes through to a real detector, recording the frame shapes of each detect call."""

    def __init__(self, detector) -> None:
        self.detector = detector
        self.calls: list[list[tuple[int, ...]]] = []

    def detect(self, frames, **kwargs):
        self.calls.append([f.shape for f in frames])
        return self.detector.detect(frames, **kwargs)

    def __getattr__(self, name):
        return getattr(self.detector, name)


def assert_same(a, b) -> None:
    assert_same_detections(a, b, iou=0.999, score_atol=1e-5, capped=True, what="batched vs alone")


def test_a_batch_of_mixed_sizes_equals_each_frame_alone(tiny_detector, frame_rgb):
    small = cv2.resize(frame_rgb, (320, 240), interpolation=cv2.INTER_AREA)
    other = np.ascontiguousarray(frame_rgb[:, ::-1])  # mirrored: same size, other content
    frames = [frame_rgb, small, other, small[::-1].copy()]
    counting = CountingDetector(tiny_detector)
    replies = detect_batch(counting, [FramePayload.encode(f) for f in frames], replica="r1")

    assert sorted(len(c) for c in counting.calls) == [2, 2]  # one call per size, never mixed
    assert all(len({shape for shape in call}) == 1 for call in counting.calls)
    assert [r.batch_size for r in replies] == [4] * 4 and {r.replica for r in replies} == {"r1"}
    for frame, reply in zip(frames, replies, strict=True):
        alone = tiny_detector.detect([frame])[0]
        assert len(alone) > 0  # score threshold 0: the random model finds boxes, so this compares something
        assert_same(reply.detections, alone)
        assert reply.proposals > 0 and reply.times.total > 0


def test_stage_times_are_each_frames_share(tiny_detector, frame_rgb):
    replies = detect_batch(tiny_detector, [FramePayload.encode(frame_rgb)] * 2)
    batch_ms = tiny_detector.last_times.total
    assert sum(r.times.total for r in replies) == pytest.approx(batch_ms, rel=0.05, abs=1.0)


def test_jpeg_payload_round_trip_keeps_size_and_colour(frame_rgb):
    raw = FramePayload.encode(frame_rgb, "raw")
    jpeg = FramePayload.encode(frame_rgb, "jpeg")
    assert raw.decode() is raw.image and raw.nbytes == frame_rgb.nbytes
    back = jpeg.decode()
    assert back.shape == frame_rgb.shape and back.dtype == np.uint8
    assert jpeg.nbytes < frame_rgb.nbytes / 5
    assert np.abs(back.astype(int) - frame_rgb).mean() < 4.0
    red = np.zeros((32, 48, 3), np.uint8)
    red[..., 0] = 255
    assert FramePayload.encode(red, "jpeg").decode()[..., 0].mean() > 240  # RGB stays RGB, not BGR


def test_payload_checks():
    with pytest.raises(ValueError, match="exactly one"):
        FramePayload()
    with pytest.raises(ValueError, match="uint8"):
        FramePayload(image=np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="transport 'png'"):
        FramePayload.encode(np.zeros((4, 4, 3), np.uint8), "png")
    with pytest.raises(ValueError, match="could not be decoded"):
        FramePayload(jpeg=b"not a jpeg").decode()


def test_knobs_validate_and_apply(tiny_detector):
    with pytest.raises(ConfigError, match="proposals 0"):
        Knobs(0, 0.5)
    with pytest.raises(ConfigError, match="score threshold 1.5"):
        Knobs(100, 1.5)
    before = (tiny_detector.proposal_count, tiny_detector.score_threshold)
    try:
        Knobs(77, 0.25).apply(tiny_detector)
        assert (tiny_detector.proposal_count, tiny_detector.score_threshold) == (77, 0.25)
    finally:
        Knobs(*before).apply(tiny_detector)


def test_replica_load_over_its_window():
    load = ReplicaLoad(window_s=5.0)
    load.started = 0.0
    load.add(1.0, 2.0, 4)  # 1 s busy, 4 frames
    load.add(3.0, 3.5, 2)
    snap = load.snapshot(now=5.0)
    assert snap["batches"] == 2 and snap["frames"] == 6 and snap["mean_batch"] == 3.0
    assert snap["busy"] == pytest.approx(1.5 / 5.0) and snap["fps"] == pytest.approx(6 / 5.0) and snap["batch"] == 3.0
    later = load.snapshot(now=7.5)  # the first batch has left the window
    assert later["busy"] == pytest.approx(0.5 / 5.0) and later["fps"] == pytest.approx(2 / 5.0) and later["batch"] == 2.0


def test_reply_defaults_are_one_frame():
    from detector.detections import Detections

    reply = FrameReply(Detections.empty(("__background__", "person")))
    assert reply.batch_size == 1 and reply.times.total == 0.0


class FailingOnSize(CountingDetector):
    """A real detector that fails on frames of one size (a GPU out of memory on the large ones)."""

    def __init__(self, detector, shape) -> None:
        super().__init__(detector)
        self.shape = shape

    def detect(self, frames, **kwargs):
        if frames[0].shape == self.shape:
            raise RuntimeError("CUDA out of memory")
        return super().detect(frames, **kwargs)


def test_a_failing_frame_fails_alone_not_its_batch(tiny_detector, frame_rgb):
    """A batch holds frames of several streams: a frame that cannot be decoded, or a frame size the
    detector fails on, gets its own error in its slot; the other frames still get their detections."""
    small = cv2.resize(frame_rgb, (320, 240), interpolation=cv2.INTER_AREA)
    payloads = [FramePayload.encode(small), FramePayload(jpeg=b"not a jpeg"), FramePayload.encode(frame_rgb)]
    replies = detect_batch(FailingOnSize(tiny_detector, frame_rgb.shape), payloads)
    assert isinstance(replies[1], ValueError) and "could not be decoded" in str(replies[1])
    assert isinstance(replies[2], RuntimeError) and "out of memory" in str(replies[2])
    assert_same(replies[0].detections, tiny_detector.detect([small])[0])
    assert replies[0].batch_size == 3
