"""The 'prior' box head and the nanodet backbone's 'head' neck: the student starts from NanoDet's own
classification of each RoI, and a checkpoint of it rebuilds with no TF.js file."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align

from detector.backbones import build_backbone
from detector.builders import COCO_CLASS_NAMES, build_paper
from detector.nanodet import NanoDet, load_tfjs_weights
from detector.prior_head import PriorPredictor, TwoMLPHeadWithPrior
from tests.detector.darknet_files import PEOPLE_FRAME0
from tests.detector.tfjs_files import needs_tfjs, tfjs_dir

COCO80 = ("__background__", *(n for n in COCO_CLASS_NAMES[1:] if n != "N/A"))


def test_at_the_start_the_classifier_is_the_prior():
    """fc_cls starts at zero and the background logit at 0: the softmax ranks classes as the prior does,
    and a RoI whose prior logits are all very negative is background."""
    torch.manual_seed(0)
    head = TwoMLPHeadWithPrior(in_channels=8 + 3, roi_size=7, representation_size=16, prior_channels=(8, 11))
    predictor = PriorPredictor(16, num_classes=4)
    x = torch.randn(2, 11, 7, 7)
    x[0, 8:] = torch.tensor([-9.0, 3.0, -2.0]).view(3, 1, 1)  # class 2 at the centre of RoI 0
    x[1, 8:] = -12.0  # nothing at all in RoI 1
    x[0, 9, 0, 0] = 50.0  # outside the centre: must not count
    logits, deltas = predictor(head(x))
    assert logits.shape == (2, 4) and deltas.shape == (2, 16)
    torch.testing.assert_close(logits[0], torch.tensor([0.0, -9.0, 3.0, -2.0]))
    probs = logits.softmax(1)
    assert probs[0].argmax() == 2 and probs[0, 2] > 0.9
    assert probs[1].argmax() == 0 and probs[1, 0] > 0.99
    # and the fc layers can move it: a gradient reaches fc_cls and the background logit
    logits.sum().backward()
    assert predictor.cls_score.weight.grad is not None and predictor.background.grad is not None


def test_the_prior_head_needs_class_maps_and_a_7x7_grid():
    with pytest.raises(ValueError, match="needs a backbone with class-logit maps"):
        build_paper(num_classes=81, backbone="nanodet", anchor_sizes=None, box_head="prior")
    with pytest.raises(ValueError, match="box_head 'mlp' is unknown"):
        build_paper(num_classes=81, backbone="nanodet", anchor_sizes=None, box_head="mlp")
    with pytest.raises(ValueError, match="centre of a 7×7 RoI grid"):
        TwoMLPHeadWithPrior(208, 5, 16, (128, 208))
    with pytest.raises(ValueError, match="neck 'fpn' is unknown"):
        build_backbone("nanodet", neck="fpn")


@needs_tfjs
def test_the_head_neck_gives_nanodets_own_class_logits(sample_frames):
    """With the TF.js weights, the 'head' neck's logit channels equal NanoDet's class outputs per level,
    so the prior of a RoI is NanoDet's score of that place: a person of the sample frame is a person."""
    path = str(tfjs_dir() / "nanodet.json")
    body = build_backbone("nanodet", neck="head", tfjs_model=path)
    full = load_tfjs_weights(NanoDet(), path)
    x = torch.rand(1, 3, 256, 320)
    with torch.no_grad():
        ours = body(x)
        theirs = full(x)
    assert body.out_channels == 208 and body.prior_channels == (128, 208)
    for level, ref in zip(ours.values(), theirs, strict=True):
        torch.testing.assert_close(level[:, 128:], ref[:, :80], atol=1e-5, rtol=1e-5)

    frame = torch.from_numpy(sample_frames[0]).permute(2, 0, 1).float().div(255)[None]
    mean, std = torch.tensor(body.image_mean).view(1, 3, 1, 1), torch.tensor(body.image_std).view(1, 3, 1, 1)
    h, w = frame.shape[-2:]
    padded = torch.zeros(1, 3, (h + 31) // 32 * 32, (w + 31) // 32 * 32)
    padded[..., :h, :w] = (frame - mean) / std
    with torch.no_grad():
        maps = body(padded)
    # the two hand-checked walkers of the sample's first frame, each on the level its size maps to
    for (x1, y1, x2, y2), level in zip(PEOPLE_FRAME0, ("0", "0"), strict=True):
        box = torch.tensor([[0.0, x1, y1, x2, y2]])
        stride = body.strides[int(level)]
        logits = roi_align(maps[level], box, 7, 1 / stride, 2)[0, 128:, 2:5, 2:5].mean((1, 2))
        assert COCO80[1 + int(logits.argmax())] == "person"


@needs_tfjs
def test_a_prior_checkpoint_rebuilds_without_the_tfjs_file(tmp_path, sample_frames):
    from detector.config import DetectorConfig
    from detector.detector import Detector
    from detector.weights import save_checkpoint

    arch = {"backbone": "nanodet", "anchor_sizes": None, "representation_size": 32, "min_size": 256, "max_size": 320,
            "box_head": "prior", "backbone_kwargs": {"neck": "head"}}
    torch.manual_seed(0)
    model = build_paper(num_classes=81, **{**arch, "backbone_kwargs": {"neck": "head",
                                                                         "tfjs_model": str(tfjs_dir() / "nanodet.json")}})
    path = save_checkpoint(tmp_path / "p.pt", model, model_name="paper", arch=arch, class_names=COCO80, half=False)
    detector = Detector(DetectorConfig(weights=str(path), device="cpu", precision="fp32", score_threshold=0.0))
    for (name, a), b in zip(model.state_dict().items(), detector.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    (det,) = detector.detect([sample_frames[0]], timing=False)
    h, w = sample_frames[0].shape[:2]
    assert len(det) > 0 and det.boxes.min() >= 0 and det.boxes[:, [0, 2]].max() <= w and det.boxes[:, [1, 3]].max() <= h
