"""Box measures: the share of a box inside another, and dropping a box inside a higher box of its class."""

from __future__ import annotations

import torch

from detector.boxes import contained_in_higher, pairwise_ioa
from detector.config import DetectorConfig
from detector.detector import Detector
from tests.matching import match


def test_pairwise_ioa_on_known_boxes():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0], [20.0, 20.0, 30.0, 30.0]])
    region = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    torch.testing.assert_close(pairwise_ioa(boxes, region), torch.tensor([[1.0], [0.5], [0.0]]))
    assert pairwise_ioa(boxes[:0], region).shape == (0, 1)


def test_a_part_inside_a_higher_box_of_its_class_is_dropped():
    person, head, torso = [0.0, 0.0, 100.0, 300.0], [30.0, 0.0, 70.0, 50.0], [0.0, 60.0, 100.0, 200.0]
    other = [200.0, 0.0, 300.0, 300.0]  # another person beside it
    bag = [30.0, 150.0, 60.0, 190.0]  # inside the person, but another class
    boxes = torch.tensor([person, head, torso, other, bag])
    scores = torch.tensor([0.9, 0.7, 0.95, 0.8, 0.6])  # the torso outscores the whole person
    labels = torch.tensor([1, 1, 1, 1, 27])
    # the torso ranks first and stays (only a higher box can take a box); the person is not inside
    # it; the head is inside the person; the bag is of another class
    assert contained_in_higher(boxes, scores, labels, 0.8).tolist() == [False, True, False, False, False]
    assert contained_in_higher(boxes[:1], scores[:1], labels[:1], 0.8).tolist() == [False]
    # a box inside only a box that was itself dropped stays: c inside b inside a, b's score below c's
    nested = torch.tensor([[0.0, 0.0, 100.0, 100.0], [0.0, 0.0, 50.0, 50.0], [0.0, 0.0, 40.0, 40.0], [300.0, 0, 400, 100]])
    # c (0.8) is inside a (0.9) as well: dropped; what matters is a kept higher box
    assert contained_in_higher(nested, torch.tensor([0.9, 0.5, 0.8, 0.1]), torch.tensor([1, 1, 1, 1]), 0.9).tolist() == [
        False, True, True, False]
    half = torch.tensor([[0.0, 0.0, 100.0, 100.0], [50.0, 0.0, 150.0, 100.0]])
    assert contained_in_higher(half, torch.tensor([0.9, 0.8]), torch.tensor([1, 1]), 0.6).tolist() == [False, False]
    assert contained_in_higher(half, torch.tensor([0.9, 0.8]), torch.tensor([1, 1]), 0.5).tolist() == [False, True]


def test_the_detector_drops_contained_boxes_only_when_asked(sample_frames):
    plain = Detector(DetectorConfig(device="cpu", precision="fp32", proposals=300, score_threshold=0.05))
    strict = Detector(DetectorConfig(device="cpu", precision="fp32", proposals=300, score_threshold=0.05,
                                     contained_threshold=0.5))
    a, b = plain.detect(sample_frames[0])[0], strict.detect(sample_frames[0])[0]
    assert 0 < len(b) < len(a)
    # what the filter keeps is a subset of the plain boxes: every kept box has its twin
    assert not match(b, a, iou=0.99, score_atol=1e-4).only_a
    dropped = contained_in_higher(torch.from_numpy(a.boxes), torch.from_numpy(a.scores), torch.from_numpy(a.class_ids), 0.5)
    assert int((~dropped).sum()) == len(b)
