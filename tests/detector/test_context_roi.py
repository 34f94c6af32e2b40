"""RoI pooling with context and border features (detector/context_roi.py): the widened head starts
out as the old one, the context pooled is the region around the RoI, the border columns say where
the RoI lies against the picture's edges."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign

from detector.builders import CONTEXT_SIZE, build_paper
from detector.context_roi import (
    BORDER_SCALE,
    BORDER_WIDTH,
    BorderFeatures,
    ContextRoIAlign,
    border_features,
    context_width,
    enlarge,
    widen_first_fc,
)
from detector.detections import Detections
from tests.matching import assert_same_detections

ARCH = dict(backbone="resnet18", min_size=128, max_size=160, representation_size=64)


def detect(model, image: torch.Tensor) -> Detections:
    with torch.no_grad():
        out = model([image])[0]
    return Detections(out["boxes"].numpy(), out["scores"].numpy(), out["labels"].numpy(), ("bg", "a", "b"))


def test_enlarge_grows_about_the_centre():
    box = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    assert enlarge(box, 2.0).tolist() == [[0.0, 0.0, 40.0, 80.0]]


def test_the_context_half_is_the_enlarged_box_pooled_and_clipped():
    features = {"0": torch.rand(1, 4, 16, 16)}
    pool = ContextRoIAlign(["0"], output_size=7, scale=2.0, context_size=3)
    boxes = [torch.tensor([[2.0, 2.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0]])]
    out = pool(features, boxes, [(64, 64)])
    assert out.shape == (2, 4 * 49 + 4 * 9)
    plain = MultiScaleRoIAlign(["0"], 3, sampling_ratio=2)
    grown = torch.tensor([[0.0, 0.0, 14.0, 14.0], [10.0, 10.0, 50.0, 50.0]])  # the first clipped at the corner
    torch.testing.assert_close(out[:, 4 * 49:], plain(features, [grown], [(64, 64)]).flatten(1))
    with pytest.raises(ValueError, match="> 1"):
        ContextRoIAlign(["0"], scale=1.0)


def test_a_widened_model_starts_with_the_old_models_detections(frame_rgb):
    torch.manual_seed(0)
    old = build_paper(num_classes=3, **ARCH).eval()
    old.roi_heads.score_thresh = 0.0
    new = build_paper(num_classes=3, **ARCH, roi_context=2.0).eval()
    new.roi_heads.score_thresh = 0.0
    state = widen_first_fc(old.state_dict(), context_width(old.backbone.out_channels, CONTEXT_SIZE))
    new.load_state_dict(state)
    image = torch.from_numpy(frame_rgb).permute(2, 0, 1).float() / 255
    a, b = detect(old, image), detect(new, image)
    assert len(a) > 10
    assert_same_detections(a, b, iou=0.999, score_atol=1e-5, capped=True, what="old vs widened")
    with torch.no_grad():  # a non-zero context weight changes the scores: the context is read
        new.roi_heads.box_head.fc6.weight[:, -1] += 1.0
    c = detect(new, image)
    assert len(c) != len(a) or not torch.allclose(torch.from_numpy(c.scores), torch.from_numpy(a.scores))


def test_context_needs_the_fc_head_on_roi_align():
    with pytest.raises(ValueError, match="roi_context needs"):
        build_paper(num_classes=3, **{**ARCH, "representation_size": 32}, roi_context=2.0, roi_op="pool",
                    anchor_sizes=((128, 256, 512),))
    with pytest.raises(ValueError, match="no roi_heads.box_head.fc6.weight"):
        widen_first_fc({"x": torch.zeros(1)}, 9)


def test_border_features_tell_a_box_cut_by_the_frame_from_one_inside_it():
    # a 100×200 (h × w) picture: a head and shoulders cut by the bottom edge, the same box well inside
    cut = torch.tensor([[50.0, 40.0, 150.0, 100.0]])
    inside = torch.tensor([[50.0, 20.0, 150.0, 80.0]])
    a, b = border_features(cut, (100, 200))[0] / BORDER_SCALE, border_features(inside, (100, 200))[0] / BORDER_SCALE
    torch.testing.assert_close(a[:4], torch.tensor([0.25, 0.4, 0.25, 0.0]))
    assert a[7] == 1.0 and b[7] < 1e-4  # bottom: touching vs 20 % of the height away
    torch.testing.assert_close(a[4:7], b[4:7], atol=1e-4, rtol=0)  # left, top, right: alike (top 0.4 vs 0.2: both far)
    assert border_features(torch.tensor([[-5.0, -5.0, 250.0, 120.0]]), (100, 200)).min() >= 0  # past the edge: clamped


def test_border_columns_follow_the_pooled_ones_row_by_row():
    features = {"0": torch.rand(1, 4, 16, 16)}
    plain = MultiScaleRoIAlign(["0"], 7, sampling_ratio=2)
    boxes = [torch.tensor([[2.0, 2.0, 10.0, 10.0], [20.0, 20.0, 64.0, 64.0]])]
    out = BorderFeatures(plain)(features, boxes, [(64, 64)])
    assert out.shape == (2, 4 * 49 + BORDER_WIDTH)
    torch.testing.assert_close(out[:, :4 * 49], plain(features, boxes, [(64, 64)]).flatten(1))
    torch.testing.assert_close(out[:, 4 * 49:], border_features(boxes[0], (64, 64)))


def test_a_model_widened_for_borders_starts_with_the_old_models_detections(frame_rgb):
    torch.manual_seed(0)
    old = build_paper(num_classes=3, **ARCH).eval()
    old.roi_heads.score_thresh = 0.0
    new = build_paper(num_classes=3, **ARCH, roi_borders=True).eval()
    new.roi_heads.score_thresh = 0.0
    new.load_state_dict(widen_first_fc(old.state_dict(), BORDER_WIDTH))
    image = torch.from_numpy(frame_rgb).permute(2, 0, 1).float() / 255
    a, b = detect(old, image), detect(new, image)
    assert len(a) > 10
    assert_same_detections(a, b, iou=0.999, score_atol=1e-5, capped=True, what="old vs widened for borders")
    with torch.no_grad():  # a weight on "touching the bottom edge" changes the scores: the borders are read
        new.roi_heads.box_head.fc6.weight[:, -1] += 1.0
    c = detect(new, image)
    assert len(c) != len(a) or not torch.allclose(torch.from_numpy(c.scores), torch.from_numpy(a.scores))
    with pytest.raises(ValueError, match="roi_borders needs box_head 'fc'"):
        build_paper(num_classes=3, **ARCH, roi_borders=True, box_head="prior")
