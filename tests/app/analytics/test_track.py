"""The tracker (ByteTrack from the ``trackers`` package) on real detections of real, consecutive
frames of the sample clip: IDs persist, rows keep their order, frames dropped before the tracker
are bridged by the frames' own timestamps."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from app.analytics.track import Tracker, Trails
from app.errors import UserError
from detector.detections import Detections
from tests.app.fakes import NAMES
from tests.conftest import SAMPLE

N_FRAMES = 8


# a detector's real output on the sample's first frames, recorded (see its "note"): the tracker's tests
# follow people the detector saw in every frame, whatever model ships in assets/ at the time
RECORDED = Path(__file__).resolve().parents[2] / "data" / "sample_people_v2.json"


@pytest.fixture(scope="module")
def clip_detections() -> tuple[list[Detections], list[float]]:
    """The people of the first frames of the sample (10 fps), with the frames' own timestamps."""
    recorded = json.loads(RECORDED.read_text())["frames"][:N_FRAMES]
    with av.open(str(SAMPLE)) as c:
        stamps = [float(f.pts * f.time_base) for _, f in zip(range(N_FRAMES), c.decode(video=0), strict=False)]
    assert stamps == [r["pts_s"] for r in recorded], "the recording is of other frames than the sample's"
    person = NAMES.index("person")
    frames = [Detections(np.array(r["boxes"], np.float32).reshape(-1, 4), r["scores"], [person] * len(r["scores"]),
                         NAMES) for r in recorded]
    assert all(len(d) >= 3 for d in frames), "the sample's first frames show several people"
    return frames, stamps


def follow(tracked: list[Detections], start: int, min_iou: float = 0.3) -> dict[int, list[int]]:
    """For each ID of frame ``start``: the ID found, in every later frame, on the box that overlaps
    its previous box most (IoU ≥ ``min_iou``) — what a person walking on would carry."""
    chains = {}
    for row, tid in enumerate(tracked[start].track_ids):
        if tid < 0:
            continue
        box, ids = tracked[start].boxes[row], [int(tid)]
        for d in tracked[start + 1:]:
            iou = box_iou(torch.from_numpy(box[None]), torch.from_numpy(d.boxes))[0]
            best = int(iou.argmax())
            assert float(iou[best]) >= min_iou, f"track {tid}: no box of the next frame overlaps {box.tolist()}"
            box = d.boxes[best]
            ids.append(int(d.track_ids[best]))
        chains[int(tid)] = ids
    return chains


def test_a_person_keeps_one_id_over_consecutive_real_frames(clip_detections):
    frames, times = clip_detections
    tracker = Tracker(frame_rate=10)
    tracked = [tracker.update(d, t) for d, t in zip(frames, times, strict=True)]
    for d, before in zip(tracked, frames, strict=True):
        np.testing.assert_array_equal(d.boxes, before.boxes)  # same rows, same order: only IDs added
        ids = d.track_ids[d.track_ids >= 0]
        assert len(set(ids.tolist())) == len(ids), "two boxes of one frame share an ID"
    # New tracks are confirmed on their third detection (no ID before: -1), then keep it.
    assert (tracked[0].track_ids == -1).all()
    start = 2
    chains = follow(tracked, start)
    assert len(chains) >= 3, f"only {len(chains)} people got an ID by frame {start}"
    for tid, ids in chains.items():
        assert ids == [tid] * len(ids), f"the person with ID {tid} changed ID: {ids}"


def test_dropped_frames_are_bridged_by_the_real_time_step(clip_detections):
    """The latest-frame policy hands the tracker frames 0, 1, 2, then 6, 7: the person moved four
    frames' worth between two updates, and keeps the ID because the tracker is told so."""
    frames, times = clip_detections
    tracker = Tracker(frame_rate=10)
    picked = [0, 1, 2, 6, 7]
    tracked = [tracker.update(frames[i], times[i]) for i in picked]
    chains = follow(tracked, 2, min_iou=0.1)  # 0.4 s apart: the boxes overlap less
    assert len(chains) >= 3
    kept = sum(ids == [tid] * len(ids) for tid, ids in chains.items())
    assert kept == len(chains), chains


@pytest.mark.parametrize("told", [True, False])
def test_the_time_step_is_what_bridges_a_gap(told):
    """A box 20 px wide moving 8 px a frame at 10 fps; the detector sees frames 0-5, then 10 (four
    dropped). Told the real time, the tracker predicts 5 frames of motion and the box is where it
    expects it; told nothing (consecutive calls), it looks 8 px ahead of frame 5 while the box is
    40 px ahead — no overlap, a new ID. This is why the pipeline passes the frames' timestamps."""
    tracker = Tracker(frame_rate=10)
    ids = []
    for k, i in enumerate([0, 1, 2, 3, 4, 5, 10]):
        box = np.array([[100 + 8 * i, 50, 120 + 8 * i, 110]], np.float32)
        t = i / 10 if told else k / 10
        ids.append(int(tracker.update(Detections(box, [0.9], [1], NAMES), t).track_ids[0]))
    assert ids[2] >= 0 and ids[2:6] == [ids[2]] * 4
    assert (ids[6] == ids[2]) is told, ids


def test_time_that_goes_back_does_not_stop_tracking():
    """A looped file or a restarted camera clock: trackers would skip such an update (all -1);
    ours shifts its clock and keeps the IDs."""
    tracker = Tracker(frame_rate=10)
    boxes = [np.array([[10.0 + 2 * i, 10, 40 + 2 * i, 90]], np.float32) for i in range(6)]
    ids = []
    for i, t in enumerate([5.0, 5.1, 5.2, 0.0, 0.1, 0.2]):
        ids.append(int(tracker.update(Detections(boxes[i], [0.9], [1], NAMES), t).track_ids[0]))
    assert ids[:2] == [-1, -1]  # a new track has an ID from its third detection on
    assert ids[2:] == [ids[2]] * 4 and ids[2] >= 0


def test_empty_frames_and_unknown_rate():
    tracker = Tracker(frame_rate=None)
    assert tracker.frame_rate == 30.0
    out = tracker.update(Detections.empty(NAMES), 0.0)
    assert len(out) == 0 and out.track_ids is not None and out.track_ids.dtype == np.int64
    with pytest.raises(ValueError, match="frame rate"):
        Tracker(frame_rate=-1)


def test_trails_follow_live_tracks_only():
    trails = Trails()
    det = Detections(np.array([[0, 0, 10, 10], [50, 50, 70, 90]], np.float32), [0.9, 0.9], [1, 1], NAMES)
    trails.add(det.with_track_ids([3, -1]), 0.0, alive={3})
    trails.add(det.with_track_ids([3, -1]).__class__(det.boxes + 10, det.scores, det.class_ids, NAMES, [3, -1]), 0.5, {3})
    snap = trails.snapshot()
    assert list(snap) == [3]
    np.testing.assert_allclose(snap[3], [[5, 5], [15, 15]])
    trails.add(Detections.empty(NAMES).with_track_ids([]), 3.0, alive={3})  # older than TRAIL_S (2 s): gone
    assert trails.snapshot() == {}


def test_a_missing_trackers_package_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "trackers", None)  # import trackers → ImportError
    with pytest.raises(UserError, match="pip install --no-deps"):
        Tracker(frame_rate=10)
