"""The helper that compares detections of two compute paths: rows that swap pass, real differences fail."""

from __future__ import annotations

import numpy as np
import pytest

from detector.detections import Detections
from tests.matching import assert_same_detections, detections_from_rows, match

NAMES = ("__background__", "person", "car", "N/A", "dog", "N/A")


def dets(rows) -> Detections:
    a = np.array(rows, dtype=np.float32).reshape(-1, 6)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int64), NAMES)


A = [[10, 10, 50, 90, 0.91, 1], [12, 11, 52, 91, 0.91, 1], [100, 40, 180, 90, 0.55, 2]]


def test_near_equal_scores_that_swap_rows_still_match():
    swapped = [A[1], A[0], A[2]]
    m = assert_same_detections(dets(A), dets(swapped), iou=0.999, score_atol=1e-4)
    assert len(m.pairs) == 3 and m.ious.min() > 0.999


def test_sets_cut_to_a_count_may_differ_in_their_last_rows_only():
    last_differs = [A[0], A[1], [300, 300, 340, 380, 0.55, 2]]
    with pytest.raises(AssertionError):
        assert_same_detections(dets(A), dets(last_differs))
    assert_same_detections(dets(A), dets(last_differs), capped=True)
    first_differs = [[300, 300, 340, 380, 0.91, 1], A[1], A[2]]
    with pytest.raises(AssertionError):
        assert_same_detections(dets(A), dets(first_differs), capped=True)


def test_a_moved_box_a_changed_class_or_an_extra_confident_box_fails():
    moved = [A[0], A[1], [100, 40, 186, 90, 0.55, 2]]
    with pytest.raises(AssertionError, match="only in the first: car"):
        assert_same_detections(dets(A), dets(moved), iou=0.99)
    other_class = [A[0], A[1], [100, 40, 180, 90, 0.55, 4]]
    with pytest.raises(AssertionError, match="differ"):
        assert_same_detections(dets(A), dets(other_class))
    extra = [*A, [300, 300, 340, 380, 0.7, 1]]
    with pytest.raises(AssertionError, match="only in the second: person 0.7000"):
        assert_same_detections(dets(A), dets(extra), floor=0.3)
    rescored = [A[0], A[1], [100, 40, 180, 90, 0.60, 2]]
    with pytest.raises(AssertionError):
        assert_same_detections(dets(A), dets(rescored), score_atol=1e-3)


def test_a_box_at_the_cut_off_may_be_in_one_set_only():
    """A detection scoring at the threshold (within the tolerance) can fall on either side of it."""
    at_floor = [*A, [300, 300, 340, 380, 0.3004, 1]]
    m = assert_same_detections(dets(A), dets(at_floor), floor=0.3, score_atol=1e-3)
    assert m.only_b == [3] and len(m.pairs) == 3


def test_pairs_are_one_to_one_and_classes_compare_by_name():
    # two boxes of one person in a, one in b: only one pair
    m = match(dets(A[:2]), dets(A[:1]), iou=0.5)
    assert len(m.pairs) == 1 and len(m.only_a) == 1
    # "N/A" at two indices of the label map is one class by name (an export keeps only the name)
    na = dets([[0, 0, 10, 10, 0.5, 3]])
    na_other_slot = dets([[0, 0, 10, 10, 0.5, 5]])
    assert len(match(na, na_other_slot).pairs) == 1
    rows = [{"class": "N/A", "score": 0.5, "x1": 0, "y1": 0, "x2": 10, "y2": 10}]
    assert len(assert_same_detections(detections_from_rows(rows, NAMES), na_other_slot).pairs) == 1
