"""RoIAlign spread over threads gives the pooler's own output, bit for bit, in the same order."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign

from detector.parallel_roi import ParallelRoIPool


def _inputs(counts=(300, 170), seed=0):
    g = torch.Generator().manual_seed(seed)
    features = OrderedDict([("0", torch.randn(len(counts), 32, 26, 35, generator=g)),
                            ("1", torch.randn(len(counts), 32, 13, 18, generator=g))])
    proposals = []
    for n in counts:
        xy = torch.rand(n, 2, generator=g) * torch.tensor([500.0, 380.0])
        wh = 8 + torch.rand(n, 2, generator=g) * 300
        proposals.append(torch.cat([xy, xy + wh], 1))
    return features, proposals, [(416, 560)] * len(counts)


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_the_same_rois_in_the_same_order_as_the_pooler_alone(threads):
    pooler = MultiScaleRoIAlign(["0", "1"], 7, 2).eval()
    features, proposals, sizes = _inputs()
    expected = pooler(features, proposals, sizes)
    wrapped = ParallelRoIPool(pooler, threads=threads)
    with torch.inference_mode():
        got = wrapped(features, proposals, sizes)
    assert wrapped._pool is not None, "the proposals were not split"
    assert got.shape == expected.shape == (470, 32, 7, 7) and torch.equal(got, expected)


def test_few_rois_or_training_go_straight_through():
    pooler = MultiScaleRoIAlign(["0", "1"], 7, 2).eval()
    features, proposals, sizes = _inputs(counts=(40,))
    wrapped = ParallelRoIPool(pooler, threads=2)
    assert torch.equal(wrapped(features, proposals, sizes), pooler(features, proposals, sizes))
    assert wrapped._pool is None
    features, proposals, sizes = _inputs()
    wrapped.train()
    wrapped(features, proposals, sizes)
    assert wrapped._pool is None


def test_the_callers_autocast_reaches_the_pool_threads():
    """Under bf16 autocast the pooler's output dtype follows its features, as without threads."""
    pooler = MultiScaleRoIAlign(["0", "1"], 7, 2).eval()
    features, proposals, sizes = _inputs()
    features = OrderedDict((k, v.bfloat16()) for k, v in features.items())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = pooler(features, proposals, sizes)
        got = ParallelRoIPool(pooler, threads=2)(features, proposals, sizes)
    assert got.dtype == expected.dtype and torch.equal(got, expected)


def test_a_cpu_detector_spreads_its_roi_align_and_gives_the_same_detections(tiny_detector, frame_rgb):
    head = tiny_detector.model.roi_heads
    assert isinstance(head.box_roi_pool, ParallelRoIPool)
    tiny_detector.set_proposal_count(300)
    try:
        (spread,) = tiny_detector.detect(frame_rgb)
        head.box_roi_pool.threads = 1
        (alone,) = tiny_detector.detect(frame_rgb)
    finally:
        head.box_roi_pool.threads = None
        tiny_detector.set_proposal_count(tiny_detector.config.proposals)
    assert len(alone) > 0 and torch.equal(torch.from_numpy(spread.boxes), torch.from_numpy(alone.boxes))
    assert torch.equal(torch.from_numpy(spread.scores), torch.from_numpy(alone.scores))
