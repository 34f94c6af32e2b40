import pytest
import torch
from torchvision.models.detection.image_list import ImageList

from detector.builders import (
    COCO_CLASS_NAMES,
    PAPER_ANCHOR_SIZES,
    PAPER_ASPECT_RATIOS,
    build_paper,
    default_anchor_sizes,
)


@pytest.fixture(scope="module")
def paper():
    torch.manual_seed(0)
    return build_paper(num_classes=3, backbone="resnet18", min_size=128, max_size=192).eval()


def test_paper_anchors_are_nine_per_position_with_the_papers_sizes(paper):
    gen = paper.rpn.anchor_generator
    assert gen.sizes == ((128, 256, 512),) and gen.sizes == PAPER_ANCHOR_SIZES
    assert gen.aspect_ratios == ((0.5, 1.0, 2.0),) and gen.aspect_ratios[0] == PAPER_ASPECT_RATIOS
    assert gen.num_anchors_per_location() == [9]
    assert paper.rpn.head.cls_logits.out_channels == 9  # one objectness score per anchor
    assert paper.rpn.head.bbox_pred.out_channels == 36  # four deltas per anchor

    # Real anchors on a 128×192 image at stride 16: 8×12 positions × 9.
    images = ImageList(torch.zeros(1, 3, 128, 192), [(128, 192)])
    feature = torch.zeros(1, 256, 8, 12)
    anchors = gen(images, [feature])[0]
    assert anchors.shape == (8 * 12 * 9, 4)
    first = anchors[:9]  # the nine anchors of position (0, 0)
    w = first[:, 2] - first[:, 0]
    h = first[:, 3] - first[:, 1]
    # torchvision rounds anchor corners to whole pixels: sizes and ratios hold to within 2 %.
    sides = sorted(float(a) ** 0.5 for a in w * h)
    assert sides == pytest.approx([128] * 3 + [256] * 3 + [512] * 3, rel=0.02)
    ratios = sorted(float(r) for r in h / w)
    assert ratios == pytest.approx([0.5] * 3 + [1.0] * 3 + [2.0] * 3, rel=0.02)


def test_paper_uses_the_papers_sampling(paper):
    rpn, roi = paper.rpn, paper.roi_heads
    assert rpn.proposal_matcher.high_threshold == 0.7 and rpn.proposal_matcher.low_threshold == 0.3
    assert rpn.proposal_matcher.allow_low_quality_matches  # best anchor of each GT box is positive
    assert rpn.fg_bg_sampler.batch_size_per_image == 256 and rpn.fg_bg_sampler.positive_fraction == 0.5
    assert roi.fg_bg_sampler.batch_size_per_image == 128


def test_paper_head_is_two_fc_layers_then_softmax_and_per_class_regressor(paper):
    assert paper.roi_heads.box_roi_pool.output_size == (7, 7)
    fc6, fc7 = paper.roi_heads.box_head.fc6, paper.roi_heads.box_head.fc7
    assert fc6.in_features == 256 * 7 * 7 and fc7.out_features == 1024
    assert paper.roi_heads.box_predictor.cls_score.out_features == 3
    assert paper.roi_heads.box_predictor.bbox_pred.out_features == 3 * 4


def test_wide_backbone_is_reduced_to_256_channels():
    model = build_paper(num_classes=2, backbone="resnet50")
    assert model.backbone.out_channels == 256
    assert isinstance(model.backbone.reduce[0], torch.nn.Conv2d)
    assert model.backbone.reduce[0].in_channels == 1024


def test_configurable_anchor_sizes_and_level_check():
    model = build_paper(num_classes=2, backbone="mobilenet_v2", anchor_sizes=((32, 64, 128),))
    assert model.rpn.anchor_generator.sizes == ((32, 64, 128),)
    with pytest.raises(ValueError, match="anchor_sizes has 2 levels but backbone 'mobilenet_v2' gives 1"):
        build_paper(num_classes=2, backbone="mobilenet_v2", anchor_sizes=((32,), (64,)))
    with pytest.raises(ValueError, match="backbone 'vgg' is unknown"):
        build_paper(num_classes=2, backbone="vgg")


def test_coco_names():
    assert len(COCO_CLASS_NAMES) == 91 and COCO_CLASS_NAMES[1] == "person" and COCO_CLASS_NAMES[3] == "car"


def test_papers_roi_max_pooling_option(small_frame):
    from detector import Detector, DetectorConfig
    from detector.builders import RoIPool

    torch.manual_seed(0)
    model = build_paper(num_classes=3, backbone="resnet18", roi_op="pool", min_size=128, max_size=192).eval()
    assert isinstance(model.roi_heads.box_roi_pool, RoIPool) and model.roi_heads.box_roi_pool.spatial_scale == 1 / 16
    det = Detector(DetectorConfig(model="paper", device="cpu", score_threshold=0.0), model=model,
                   class_names=("__background__", "a", "b"))
    assert len(det.detect([small_frame])[0]) > 0
    with pytest.raises(ValueError, match="roi_op 'warp' is unknown"):
        build_paper(num_classes=3, backbone="resnet18", roi_op="warp")


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_default_anchors_are_nine_per_position_on_every_level(levels):
    sizes = default_anchor_sizes(levels)
    assert len(sizes) == levels and all(len(level) == 3 for level in sizes)
    flat = [s for level in sizes for s in level]
    assert flat == sorted(flat) and len(set(flat)) == len(flat)  # finest level first, no size twice
    if levels == 1:
        assert sizes == PAPER_ANCHOR_SIZES
    else:
        assert flat[0] == 16 and flat[-1] == 512
    assert default_anchor_sizes(2) == ((16, 32, 64), (128, 256, 512))  # the default model's


def test_auto_anchors_follow_the_backbone_levels():
    model = build_paper(num_classes=3, backbone="yolov3_tiny", anchor_sizes=None, reduce_channels=32,
                        representation_size=64)
    assert model.rpn.anchor_generator.num_anchors_per_location() == [9, 9]
    assert model.rpn.anchor_generator.sizes == default_anchor_sizes(2)
