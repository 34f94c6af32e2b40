import json

import numpy as np
import pytest

from detector.detections import Detections

NAMES = ("__background__", "person", "car", "N/A", "dog")


def make(n=3):
    boxes = np.array([[0, 0, 10, 20], [5, 5, 50, 60], [1, 2, 3, 4]], np.float64)[:n]
    return Detections(boxes, [0.9, 0.4, 0.7][:n], [1, 2, 1][:n], NAMES)


def test_types_and_lengths_are_normalised():
    det = make()
    assert det.boxes.dtype == np.float32 and det.boxes.shape == (3, 4)
    assert det.scores.dtype == np.float32 and det.class_ids.dtype == np.int64
    assert len(det) == 3 and det.labels == ["person", "car", "person"]


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="same length; got 2, 3, 3"):
        Detections(np.zeros((2, 4)), [0.1, 0.2, 0.3], [1, 1, 1], NAMES)


def test_bad_box_shape_and_class_id_are_refused():
    with pytest.raises(ValueError, match=r"shape \[N, 4\]"):
        Detections(np.zeros((2, 5)), [0.1, 0.2], [1, 1], NAMES)
    with pytest.raises(ValueError, match="class id 7 is outside the label map of 5 names"):
        Detections(np.zeros((1, 4)), [0.1], [7], NAMES)


def test_empty():
    det = Detections.empty(NAMES)
    assert len(det) == 0 and det.boxes.shape == (0, 4) and det.to_rows() == []


def test_filter_by_score_and_class():
    det = make()
    assert len(det.filter(min_score=0.5)) == 2
    people = det.filter(classes=["person"])
    assert people.labels == ["person", "person"]
    np.testing.assert_array_equal(people.scores, np.float32([0.9, 0.7]))
    both = det.filter(min_score=0.8, classes=["person", "car"])
    assert both.labels == ["person"]
    with pytest.raises(ValueError, match=r"unknown class names \['cat'\]; valid names: person, car, dog"):
        det.filter(classes=["cat"])


def test_mask_indexing_keeps_rows_together():
    det = make()
    sub = det[np.array([False, True, True])]
    np.testing.assert_array_equal(sub.boxes, det.boxes[1:])
    assert sub.labels == ["car", "person"]


def test_rows_are_json_ready():
    rows = make().to_rows()
    assert json.loads(json.dumps(rows)) == rows
    assert rows[1] == {"class": "car", "class_id": 2, "score": 0.4, "x1": 5.0, "y1": 5.0, "x2": 50.0, "y2": 60.0,
                       "track_id": -1}
    tracked = make().with_track_ids([4, -1, 9]).to_rows()
    assert [r["track_id"] for r in tracked] == [4, -1, 9]


def test_track_ids_follow_the_rows_and_are_validated():
    det = make().with_track_ids(np.array([7, -1, 3]))
    assert det.track_ids.dtype == np.int64
    np.testing.assert_array_equal(det[np.array([True, False, True])].track_ids, [7, 3])
    np.testing.assert_array_equal(det.filter(min_score=0.5).track_ids, [7, 3])
    assert make()[:2].track_ids is None  # no tracker ran: stays None through selection
    with pytest.raises(ValueError, match="one entry per detection; got 2 for 3"):
        make().with_track_ids([1, 2])
    with pytest.raises(ValueError, match="must be integers"):
        make().with_track_ids([1.5, 2.0, 3.0])
    with pytest.raises(ValueError, match="track id -2 is invalid"):
        make().with_track_ids([1, -2, 3])


def test_fractional_class_ids_are_refused_not_truncated():
    """A class id of 1.7 was cut to 1 in silence (a 'person' that was never one); whole floats stay fine."""
    with pytest.raises(ValueError, match="class ids must be whole numbers; got 1.7"):
        Detections(np.zeros((2, 4)), [0.5, 0.5], [2.0, 1.7], NAMES)
    with pytest.raises(ValueError, match="whole numbers; got nan"):
        Detections(np.zeros((1, 4)), [0.5], [np.nan], NAMES)
    assert Detections(np.zeros((1, 4)), [0.5], np.array([2.0]), NAMES).labels == ["car"]
