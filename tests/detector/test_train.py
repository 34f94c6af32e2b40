"""Training on a tiny real set: one frame of the sample clip with its six people (hand-checked boxes)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detector.builders import build_paper
from detector.train import CocoDetectionData, TrainConfig, Trainer, WeightedMix, has_frozen_trunk
from detector.train_data import category_names

# frame 0 of assets/sample.mp4: six people, head to feet (x1, y1, x2, y2), checked by drawing them
PEOPLE = [(640, 191, 666, 284), (461, 221, 499, 316), (326, 374, 386, 516), (218, 157, 245, 218),
          (311, 159, 351, 233), (137, 153, 168, 220)]


@pytest.fixture()
def one_image(tmp_path, sample_frames) -> Path:
    cv2.imwrite(str(tmp_path / "f0.jpg"), cv2.cvtColor(sample_frames[0], cv2.COLOR_RGB2BGR))
    anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
             "area": (x2 - x1) * (y2 - y1), "iscrowd": 0} for i, (x1, y1, x2, y2) in enumerate(PEOPLE)]
    anns.append({"id": 99, "image_id": 1, "category_id": 1, "bbox": [0, 0, 30, 30], "area": 900, "iscrowd": 1})
    data = {"images": [{"id": 1, "file_name": "f0.jpg", "width": 768, "height": 576}], "annotations": anns,
            "categories": [{"id": 1, "name": "person"}]}
    path = tmp_path / "one.json"
    path.write_text(json.dumps(data))
    return path


def _model(num_classes: int, backbone: str = "yolov3_tiny"):
    torch.manual_seed(0)
    anchors = ((16, 32, 64), (128, 256, 512)) if backbone == "yolov3_tiny" else ((32, 64, 128),)
    return build_paper(num_classes, backbone=backbone, anchor_sizes=anchors,
                       representation_size=128, reduce_channels=64, min_size=288, max_size=384)


def test_dataset_reads_boxes_and_keeps_crowd_as_ignore(one_image):
    data = CocoDetectionData(one_image)
    assert data.class_names == ("__background__", "person")
    assert len(data) == 1 and data.samples[0].boxes.shape == (6, 4)
    np.testing.assert_array_equal(data.samples[0].ignore, [[0, 0, 30, 30]])
    assert data.image(0).shape == (576, 768, 3)


def test_training_overfits_one_image_with_cached_trunk(one_image):
    data = CocoDetectionData(one_image)
    model = _model(len(data.class_names))
    assert has_frozen_trunk(model)
    cfg = TrainConfig(epochs=1, iters_per_epoch=100, batch_size=1, lr=0.05, warmup_iters=5, hflip=False,
                      rpn_pre_nms_train=500, rpn_post_nms_train=200, log_every=1000)
    trainer = Trainer(model, data, cfg)
    trainer.model.train()
    item = trainer._train_item(0, 0)
    with torch.no_grad():
        start = float(sum(trainer.losses([item]).values()))
    trainer.run()
    trainer.model.train()
    with torch.no_grad():
        end = float(sum(trainer.losses([item]).values()))
    assert trainer.cached and len(trainer.cache) == 1
    assert end < 0.5 * start, f"loss {start:.3f} → {end:.3f}"
    # the trunk stayed frozen
    assert not any(p.grad is not None for p in model.backbone.trunk.parameters())


def test_rpn_box_loss_gets_the_paper_lambda_weight(one_image):
    data = CocoDetectionData(one_image)
    model = _model(len(data.class_names))
    trainer = Trainer(model, data, TrainConfig(hflip=False, box_lambda=10.0))
    trainer.model.train()
    item = trainer._train_item(0, 0)
    torch.manual_seed(0)
    with torch.no_grad():
        w10 = trainer.losses([item])["loss_rpn_box_reg"]
    trainer.config = TrainConfig(hflip=False, box_lambda=5.0)
    torch.manual_seed(0)
    with torch.no_grad():
        w5 = trainer.losses([item])["loss_rpn_box_reg"]
    torch.testing.assert_close(w10, 2 * w5)


def test_alternating_schedule_trains_each_part_in_turn(one_image):
    data = CocoDetectionData(one_image)
    model = _model(len(data.class_names))
    cfg = TrainConfig(epochs=4, iters_per_epoch=2, batch_size=1, schedule="alternating", hflip=False,
                      rpn_pre_nms_train=300, rpn_post_nms_train=100, warmup_iters=1)
    trainer = Trainer(model, data, cfg)
    history = trainer.run()
    assert [h["step"] for h in history] == ["rpn", "detector", "rpn_head", "detector_head"]
    assert "loss_classifier" not in history[0] and "loss_objectness" in history[0]
    assert "loss_objectness" not in history[1] and "loss_classifier" in history[1]


def test_uncached_backbone_trains_end_to_end(one_image):
    data = CocoDetectionData(one_image)
    model = _model(len(data.class_names), backbone="resnet18")
    cfg = TrainConfig(epochs=1, iters_per_epoch=2, batch_size=1, hflip=True, scales=(224, 256), warmup_iters=1,
                      rpn_pre_nms_train=300, rpn_post_nms_train=100)
    trainer = Trainer(model, data, cfg)
    assert not trainer.cached
    before = model.backbone.body[0].weight.detach().clone()
    history = trainer.run()
    assert all(torch.isfinite(torch.tensor(v)) for k, v in history[0].items() if k.startswith("loss"))
    assert not torch.equal(before, model.backbone.body[0].weight)


def test_the_roi_batch_sets_how_many_rois_the_head_samples(one_image):
    """roi_batch 16: the head's loss is taken over 16 sampled RoIs an image (the paper's 128 otherwise)."""
    data = CocoDetectionData(one_image)
    seen = []
    for batch in (None, 16):
        trainer = Trainer(_model(len(data.class_names)), data, TrainConfig(hflip=False, roi_batch=batch))
        heads = trainer.model.roi_heads
        sampled = heads.subsample
        heads.subsample = lambda labels, *a, _f=sampled: seen.append(_f(labels, *a)) or seen[-1]
        trainer.model.train()
        trainer.losses([trainer._train_item(0, 0)])
        assert heads.fg_bg_sampler.batch_size_per_image == (batch or 128)
    counts = [sum(len(i) for i in s) for s in seen]
    assert counts[1] <= 16 < counts[0], counts


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="roi_batch 0"):
        TrainConfig(roi_batch=0)
    with pytest.raises(ValueError, match="schedule 'bogus'"):
        TrainConfig(schedule="bogus")
    with pytest.raises(ValueError, match="epochs ≥ 4"):
        TrainConfig(schedule="alternating", epochs=2)


def test_lr_drops_when_the_time_budget_runs_short(one_image):
    """A run whose time limit is (nearly) spent gets its ×0.1 phase even though few iterations ran."""
    data = CocoDetectionData(one_image)
    lrs = {}
    for limit in (None, 1e-6):
        cfg = TrainConfig(epochs=1, iters_per_epoch=2, batch_size=1, lr=0.01, warmup_iters=1, hflip=False,
                          time_limit_s=limit, rpn_pre_nms_train=200, rpn_post_nms_train=100)
        trainer = Trainer(_model(len(data.class_names)), data, cfg)
        trainer.run(on_epoch=lambda tr, rec, key=limit: lrs.__setitem__(key, rec["optimizer"]["param_groups"][0]["lr"]))
    assert lrs[None] == pytest.approx(0.01) and lrs[1e-6] == pytest.approx(0.001)


def test_augmented_training_lowers_the_loss_with_the_trunk_under_no_grad(one_image):
    """A smoke run: 40 augmented iterations (mosaic, zoom, colour, flips) on the real frame; the loss on
    the frame as it is falls, nothing is cached, and only the neck and heads get gradients."""
    data = CocoDetectionData(one_image)
    model = _model(len(data.class_names))
    cfg = TrainConfig(epochs=1, iters_per_epoch=40, batch_size=1, lr=0.05, warmup_iters=5, seed=1,
                      augment=("mosaic", "scale", "color", "flip"), scale_range=(0.5, 2.0),
                      rpn_pre_nms_train=500, rpn_post_nms_train=200, log_every=1000)
    trainer = Trainer(model, data, cfg)
    assert not trainer.cached
    # the augmentation draws at the training size (the model's 288 px short side here) in one go
    assert min(trainer._train_item(0, 0).image_size) == 288
    trainer.model.train()
    item = trainer._prepare(data.annotated(0), trainer.eval_size, False, cache=False)

    def loss() -> float:
        torch.manual_seed(0)
        with torch.no_grad():
            return float(sum(trainer.losses([item]).values()))

    start = loss()
    history = trainer.run()
    trainer.model.train()
    end = loss()
    assert end < 0.7 * start, f"loss {start:.3f} → {end:.3f}"
    assert trainer.cache == {} and history[0]["iters_per_s"] > 0
    assert all(p.grad is None for p in model.backbone.trunk.parameters())
    assert all(p.grad is not None for p in model.backbone.reduce.parameters())


def _json(tmp_path, name: str, images: int, categories=("person",)) -> Path:
    frame = tmp_path / "f0.jpg"
    if not frame.exists():
        cv2.imwrite(str(frame), np.zeros((64, 64, 3), np.uint8))
    data = {"images": [{"id": i + 1, "file_name": "f0.jpg", "width": 64, "height": 64} for i in range(images)],
            "annotations": [], "categories": [{"id": 10 + j, "name": n} for j, n in enumerate(categories)]}
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_weighted_mix_draws_by_weight_and_covers_each_set(tmp_path):
    import random

    a, b = _json(tmp_path, "a.json", 3), _json(tmp_path, "b.json", 10, ("person", "dog"))
    names = category_names([a, b])
    assert names == ("__background__", "person", "dog")
    mix = WeightedMix([(CocoDetectionData(a, names), 3.0), (CocoDetectionData(b, names), 1.0)], random.Random(0))
    assert len(mix) == 13
    draws = [mix.draw() for _ in range(4000)]
    share_a = sum(d == 0 for d, _ in draws) / len(draws)
    assert 0.72 < share_a < 0.78  # 3 / (3 + 1)
    # within a dataset, every image comes once before any comes twice
    first_b = [i for d, i in draws if d == 1][:10]
    assert sorted(first_b) == list(range(10))
    with pytest.raises(ValueError, match="weight 0"):
        WeightedMix([(CocoDetectionData(a, names), 0)], random.Random(0))
    with pytest.raises(ValueError, match="class names"):
        WeightedMix([(CocoDetectionData(a), 1.0), (CocoDetectionData(b), 1.0)], random.Random(0))


def test_bad_augment_settings_are_named():
    with pytest.raises(ValueError, match="'zoom' is unknown"):
        TrainConfig(augment=("zoom",))
    with pytest.raises(ValueError, match="ignore_ioa 1.5"):
        TrainConfig(ignore_ioa=1.5)


def test_trunk_runs_channels_last_and_optionally_bf16_with_the_same_maps(one_image):
    data = CocoDetectionData(one_image)
    model = _model(len(data.class_names))
    trainer = Trainer(model, data, TrainConfig())
    image = trainer._prepare(data.annotated(0), 288, False, cache=False).image[None]
    with torch.no_grad():
        plain = model.backbone.trunk_features(image)
    fast = trainer._trunk(image)
    for a, b in zip(fast, plain, strict=True):
        assert a.is_contiguous() and a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    trainer.config = TrainConfig(trunk_precision="bf16")
    for a, b in zip(trainer._trunk(image), plain, strict=True):
        assert a.dtype == torch.float32 and float((a - b).abs().max() / b.abs().max()) < 0.05
    with pytest.raises(ValueError, match="trunk_precision 'fp16'"):
        TrainConfig(trunk_precision="fp16")


def test_a_trunk_that_refuses_channels_last_gets_contiguous_input(one_image):
    data = CocoDetectionData(one_image)
    model = _model(len(data.class_names))
    original = model.backbone.trunk_features

    def strict(x):  # as a converted graph that reshapes with view() would
        if not x.is_contiguous():
            raise RuntimeError("view size is not compatible with input tensor's size and stride")
        return original(x)

    model.backbone.trunk_features = strict
    trainer = Trainer(model, data, TrainConfig(augment=("flip",)))
    assert not trainer.channels_last
    assert len(trainer._trunk(torch.rand(1, 3, 64, 96))) == 2
    assert Trainer(_model(len(data.class_names)), data, TrainConfig()).channels_last
