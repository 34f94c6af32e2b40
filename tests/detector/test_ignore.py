"""The ignore label: on a real frame, no anchor or RoI sampled as background lies on an ignore region —
while without the label some do; inference and checkpoints are untouched."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from detector.ignore import (
    IgnoreAwareRoIHeads,
    IgnoreAwareRPN,
    hardest_negatives,
    ignore_negatives,
    ignore_overlap,
    ignored,
    part_negatives,
    sample_with_parts,
    use_ignore_regions,
)
from detector.train import CocoDetectionData, TrainConfig, Trainer
from tests.detector.test_train import PEOPLE, _model

# frame 0 of assets/sample.mp4 (drawn and checked): the white van at the top right, the car cut by the
# right edge of the frame, and the man on the right (labelled uncertain here) are ignore regions
VAN, EDGE_CAR = (650, 42, 724, 100), (734, 48, 768, 96)
UNCERTAIN = PEOPLE[0]


@pytest.fixture()
def frame_with_ignore(tmp_path, sample_frames):
    cv2.imwrite(str(tmp_path / "f0.jpg"), cv2.cvtColor(sample_frames[0], cv2.COLOR_RGB2BGR))
    anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
             "area": (x2 - x1) * (y2 - y1), "iscrowd": 0} for i, (x1, y1, x2, y2) in enumerate(PEOPLE[1:])]
    for j, (box, cat) in enumerate(((VAN, 2), (EDGE_CAR, 2), (UNCERTAIN, 1))):
        x1, y1, x2, y2 = box
        anns.append({"id": 100 + j, "image_id": 1, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1],
                     "area": (x2 - x1) * (y2 - y1), "iscrowd": 1})
    path = tmp_path / "ignore.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "f0.jpg", "width": 768, "height": 576}],
                                "annotations": anns,
                                "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]}))
    return CocoDetectionData(path)


class SamplerSpy:
    """Records what torchvision's sampler returns (positive and negative masks per image)."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, labels):
        pos, neg = self.inner(labels)
        self.calls.append((pos, neg))
        return pos, neg


def _sampled_negatives(data: CocoDetectionData, ioa: float | None, rpn_batch: int, roi_batch: int, **config):
    """(negative anchors [K, 4], negative RoIs [R, 4], ignore boxes [M, 4]) of one training step, in
    the resized image's pixels."""
    model = _model(len(data.class_names))
    model.rpn.fg_bg_sampler.batch_size_per_image = rpn_batch
    model.roi_heads.fg_bg_sampler.batch_size_per_image = roi_batch
    trainer = Trainer(model, data, TrainConfig(hflip=False, ignore_ioa=ioa, rpn_pre_nms_train=2000,
                                               rpn_post_nms_train=1000, **config))
    rpn, heads = trainer.model.rpn, trainer.model.roi_heads
    spy = rpn.fg_bg_sampler = SamplerSpy(rpn.fg_bg_sampler)
    seen: dict[str, list] = {}
    assign, select = rpn.assign_targets_to_anchors, heads.select_training_samples

    def record_anchors(anchors, targets):
        seen["anchors"] = anchors
        return assign(anchors, targets)

    def record_rois(proposals, targets):
        out = select(proposals, targets)
        seen["rois"] = out
        return out

    forward = heads.forward

    def record_features(features, proposals, image_shapes, targets=None):
        seen["features"], seen["image_sizes"] = features, image_shapes
        return forward(features, proposals, image_shapes, targets)

    rpn.assign_targets_to_anchors, heads.select_training_samples = record_anchors, record_rois
    heads.forward = record_features
    trainer.model.train()
    item = trainer._train_item(0, 0)
    torch.manual_seed(0)
    with torch.no_grad():
        trainer.losses([item])
    (_, neg), = spy.calls
    anchors = seen["anchors"][0][neg[0].bool()]
    proposals, _, labels, _ = seen["rois"]
    _sampled_negatives.labels = item.target["boxes"]  # the labels in the same resized pixels
    _sampled_negatives.heads = heads
    _sampled_negatives.features, _sampled_negatives.image_sizes = seen.get("features"), seen.get("image_sizes")
    return anchors, proposals[0][labels[0] == 0], item.target["ignore"]


@pytest.mark.parametrize("rpn_batch, roi_batch", [(256, 128), (4096, 1024)])
def test_sampled_negatives_avoid_ignore_regions_only_with_the_label(frame_with_ignore, rpn_batch, roi_batch):
    data = frame_with_ignore
    assert data.samples[0].ignore.shape == (3, 4)
    on_anchors, on_rois, ignore = _sampled_negatives(data, 0.5, rpn_batch, roi_batch)
    off_anchors, off_rois, _ = _sampled_negatives(data, None, rpn_batch, roi_batch)
    assert len(ignore) == 3
    # as many negatives are sampled either way (the ignored ones are replaced by others)
    assert len(on_anchors) == len(off_anchors) > 0 and len(on_rois) > 0
    # RPN: background means IoU < 0.3 with every box; RoI head: IoU < 0.5
    assert not ignored(on_anchors, ignore, 0.5, 0.3).any()
    assert not ignored(on_rois, ignore, 0.5, 0.5).any()
    if rpn_batch > 256:  # a large sample: without the label, background is sampled on the ignore regions
        assert ignored(off_anchors, ignore, 0.5, 0.3).sum() >= 5
        assert ignored(off_rois, ignore, 0.5, 0.5).sum() >= 5


def test_part_sampling_counts_on_a_known_case():
    # 10 positives, then 20 part negatives, then 200 other negatives; 128 RoIs at most 25 % positive
    labels = torch.cat([torch.ones(10, dtype=torch.int64), torch.zeros(220, dtype=torch.int64)])
    parts = torch.zeros(230, dtype=torch.bool)
    parts[10:30] = True

    def counts(labels, parts, fraction):
        idx = sample_with_parts(labels, parts, 128, 0.25, fraction, torch.Generator().manual_seed(0))
        assert len(set(idx.tolist())) == len(idx)  # no RoI twice
        return int((labels[idx] >= 1).sum()), int(parts[idx].sum()), int(((labels[idx] == 0) & ~parts[idx]).sum())

    assert counts(labels, parts, 0.0) == (10, 0, 118)
    assert counts(labels, parts, 0.1) == (10, 12, 106)  # round(118 · 0.1)
    assert counts(labels, parts, 0.5) == (10, 20, 98)  # only 20 parts exist: the rest are other negatives
    few_others = parts.clone()
    few_others[30:220] = True  # 200 parts, 10 other negatives: parts fill the 108 places left
    assert counts(labels, few_others, 0.5) == (10, 108, 10)
    # a part is a background RoI mostly inside a label; a positive or a box half outside is not
    gt = torch.tensor([[0.0, 0.0, 100.0, 200.0]])
    rois = torch.tensor([[10.0, 10.0, 60.0, 60.0], [0.0, 0.0, 100.0, 190.0], [80.0, 0.0, 130.0, 50.0]])
    assert part_negatives(torch.tensor([0, 1, 0]), rois, gt, 0.7).tolist() == [True, False, False]


def test_part_negatives_are_sampled_on_a_real_frame(frame_with_ignore):
    """On frame 0 of the sample (two labelled people) an untrained RPN proposes few parts of them (16 of
    ~1000): with the option every one of them is sampled, with uniform sampling about one."""
    data = frame_with_ignore
    counts = {}
    for fraction in (0.0, 0.5):
        torch.manual_seed(0)
        _, rois, _ = _sampled_negatives(data, 0.5, 256, 128, part_negatives=fraction)
        inside, _ = ignore_overlap(rois, _sampled_negatives.labels)
        counts[fraction] = (int((inside >= 0.7).sum()), len(rois))
    parts_on, negatives_on = counts[0.5]
    assert parts_on >= 8 and negatives_on == counts[0.0][1], counts  # as many negatives either way
    assert counts[0.0][0] <= parts_on / 4, counts


def test_hard_negative_sampling_on_a_known_case():
    # 4 negatives: two nearly the same box (IoU 0.9) scored 0.9 and 0.8 as objects, one apart at 0.5,
    # one at 0.1; a positive scored 0.95 is never a negative
    labels = torch.tensor([0, 0, 0, 0, 1])
    boxes = torch.tensor([[0, 0, 100, 100], [0, 0, 100, 90], [200, 0, 300, 100], [400, 0, 500, 100],
                          [0, 0, 100, 100.0]])
    prob = torch.tensor([0.9, 0.8, 0.5, 0.1, 0.95])
    # NMS among the negatives: the 0.8 twin of the 0.9 box is not a second hard place
    assert hardest_negatives(labels, boxes, prob).tolist() == [0, 2, 3]
    # 10 positives and 200 negatives, hardest first 10..19; 128 RoIs, at most 25 % positive → 118 negatives
    labels = torch.cat([torch.ones(10, dtype=torch.int64), torch.zeros(200, dtype=torch.int64)])
    hard = torch.arange(10, 20)
    for fraction, want in ((0.05, 6), (0.5, 10)):  # round(118 · 0.05) = 6; only 10 hard ones exist
        idx = sample_with_parts(labels, None, 128, 0.25, fraction, torch.Generator().manual_seed(0), hard=hard)
        assert len(idx) == 128 and len(set(idx.tolist())) == 128
        assert set(hard[:want].tolist()) <= set(idx.tolist())
        if want < 10:  # the hardest are taken in order; the others only by the uniform draw's chance
            assert int(((idx >= 10) & (idx < 20)).sum()) < want + 3
    with pytest.raises(ValueError, match="same negatives"):
        use_ignore_regions(_model(2), 0.5, part_fraction=0.5, hard_fraction=0.5)


def test_hard_negatives_are_the_ones_the_head_scores_as_objects(frame_with_ignore):
    """On frame 0 of the sample the head (random fc weights, the same seed) scores every background RoI;
    mining draws negatives it scores higher as objects than uniform sampling does."""
    data = frame_with_ignore
    scored = {}
    for fraction in (0.0, 1.0):
        torch.manual_seed(0)
        _, rois, _ = _sampled_negatives(data, 0.5, 256, 128, hard_negatives=fraction)
        heads = _sampled_negatives.heads
        with torch.no_grad():
            logits, _ = heads.box_predictor(heads.box_head(heads.box_roi_pool(
                _sampled_negatives.features, [rois], _sampled_negatives.image_sizes)))
        scored[fraction] = (1 - torch.softmax(logits, -1)[:, 0], len(rois))
    assert scored[1.0][1] == scored[0.0][1] > 0  # as many negatives either way
    assert scored[1.0][0].mean() > scored[0.0][0].mean(), (scored[1.0][0].mean(), scored[0.0][0].mean())


def test_roi_positive_iou_leaves_a_gap():
    model = use_ignore_regions(_model(2), 0.5, fg_iou=0.6)
    heads = model.roi_heads
    gt = [torch.tensor([[0.0, 0.0, 10.0, 10.0]])]
    rois = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.5], [0.0, 0.0, 10.0, 4.0]])]
    _, labels = heads.assign_targets_to_proposals(rois, gt, [torch.tensor([1])])
    assert labels[0].tolist() == [1, -1, 0]  # IoU 1 → person, 0.55 → neither, 0.4 → background
    _, labels = use_ignore_regions(_model(2), 0.5).roi_heads.assign_targets_to_proposals(rois, gt, [torch.tensor([1])])
    assert labels[0].tolist() == [1, 1, 0]  # the paper's 0.5
    with pytest.raises(ValueError, match="positive IoU"):
        use_ignore_regions(_model(2), 0.5, fg_iou=0.4)


def test_overlap_measures():
    boxes = torch.tensor([[0, 0, 10, 10], [5, 5, 15, 15], [0, 0, 100, 100], [50, 50, 60, 60.0]])
    ioa, iou = ignore_overlap(boxes, torch.tensor([[0, 0, 20, 20.0]]))
    torch.testing.assert_close(ioa, torch.tensor([1.0, 1.0, 0.04, 0.0]))  # share of each box inside
    torch.testing.assert_close(iou, torch.tensor([0.25, 0.25, 0.04, 0.0]))
    # the IoU rule catches a large box around a small ignore box (IoA 0.4 < 0.5, IoU 0.4 ≥ 0.3)
    big = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    assert ignored(big, torch.tensor([[0.0, 0.0, 10.0, 4.0]]), 0.5, 0.3).item()
    assert not ignored(big, torch.tensor([[0.0, 0.0, 10.0, 4.0]]), 0.5, 0.5).item()
    assert not ignored(big, None, 0.5, 0.3).any()


def test_inference_and_checkpoints_are_untouched(sample_frames):
    plain = _model(3).eval()
    keys = {k: v.clone() for k, v in plain.state_dict().items()}
    aware = use_ignore_regions(_model(3).eval())
    assert isinstance(aware.rpn, IgnoreAwareRPN) and isinstance(aware.roi_heads, IgnoreAwareRoIHeads)
    assert not aware.rpn.training and aware.rpn._post_nms_top_n == plain.rpn._post_nms_top_n
    assert list(aware.state_dict()) == list(keys)
    aware.load_state_dict(keys)  # an old checkpoint loads
    image = torch.from_numpy(np.ascontiguousarray(sample_frames[0])).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        a, b = plain([image])[0], aware([image])[0]
    assert len(a["boxes"]) > 0
    torch.testing.assert_close(a["boxes"], b["boxes"])
    torch.testing.assert_close(a["scores"], b["scores"])
    # a second call changes only the threshold
    assert use_ignore_regions(aware, 0.7).rpn.ignore_ioa == 0.7 and aware.roi_heads.ignore_ioa == 0.7
    with pytest.raises(ValueError, match="IoA threshold 0"):
        use_ignore_regions(aware, 0.0)


def test_an_image_inside_one_ignore_region_keeps_a_sample(sample_frames):
    """A zoom crop inside one uncertain region, with no object: every anchor and RoI lies on the
    ignore box. The image keeps one negative, so the training losses stay finite (without it the
    samplers sampled nothing and the losses were a mean over nothing: NaN)."""
    model = use_ignore_regions(_model(3)).train()
    image = torch.from_numpy(np.ascontiguousarray(sample_frames[0][:256, :256])).permute(2, 0, 1).float() / 255
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
              "ignore": torch.tensor([[-2000.0, -2000.0, 4000.0, 4000.0]])}
    losses = model([image], [target])
    assert all(torch.isfinite(v) for v in losses.values()), losses
    labels = torch.tensor([0.0, 0.0, 1.0])
    ignore_negatives(labels, torch.tensor([[0, 0, 10, 10], [0, 0, 50, 50], [0, 0, 8, 8.0]]),
                     torch.tensor([[0, 0, 20, 20.0]]), 0.5, 0.3)
    assert labels.tolist() == [-1.0, 0.0, 1.0]  # a positive exists: only the negative inside is dropped
    labels = torch.tensor([0.0, 0.0])
    ignore_negatives(labels, torch.tensor([[0, 0, 10, 10], [5, 5, 25, 25.0]]), torch.tensor([[0, 0, 20, 20.0]]), 0.5, 0.9)
    assert labels.tolist() == [-1.0, 0.0]  # both inside (IoA 1 and 0.56), no positive: the least inside stays


def test_part_ignore_drops_only_uncertain_boxes_inside_a_label_of_their_class(tmp_path, sample_frames):
    cv2.imwrite(str(tmp_path / "f0.jpg"), cv2.cvtColor(sample_frames[0], cv2.COLOR_RGB2BGR))
    person = [100, 100, 100, 300]  # x, y, w, h
    head = [120, 100, 60, 60]  # a 'person' region inside the person: dropped
    bag = [150, 250, 40, 40]  # a 'car' region inside the person: another class, kept
    half_out = [150, 100, 100, 100]  # a 'person' region half outside: kept
    anns = [{"id": i + 1, "image_id": 1, "category_id": cat, "bbox": box, "area": box[2] * box[3], "iscrowd": crowd}
            for i, (box, cat, crowd) in enumerate([(person, 1, 0), (head, 1, 1), (bag, 2, 1), (half_out, 1, 1)])]
    path = tmp_path / "parts.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "f0.jpg", "width": 768, "height": 576}],
                                "annotations": anns,
                                "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]}))

    def regions(**kw):
        return [[round(v) for v in r] for r in CocoDetectionData(path, **kw).samples[0].ignore]

    assert regions() == [[120, 100, 180, 160], [150, 250, 190, 290], [150, 100, 250, 200]]
    assert regions(part_ignore=0.7) == [[150, 250, 190, 290], [150, 100, 250, 200]]
    assert regions(part_ignore=0.4) == [[150, 250, 190, 290]]  # half inside counts at 0.4


def test_low_scored_labels_become_ignore_regions(tmp_path, sample_frames):
    cv2.imwrite(str(tmp_path / "f0.jpg"), cv2.cvtColor(sample_frames[0], cv2.COLOR_RGB2BGR))
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 100], "area": 5000, "iscrowd": 0, "score": 0.9},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [200, 10, 50, 100], "area": 5000, "iscrowd": 0, "score": 0.45},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [400, 10, 50, 100], "area": 5000, "iscrowd": 0},  # by hand
            {"id": 4, "image_id": 1, "category_id": 1, "bbox": [600, 10, 50, 50], "area": 2500, "iscrowd": 1, "score": 0.3}]
    path = tmp_path / "scored.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "f0.jpg", "width": 768, "height": 576}],
                                "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))
    kept = CocoDetectionData(path).samples[0]
    assert len(kept.boxes) == 3 and len(kept.ignore) == 1
    assert kept.scores.tolist() == pytest.approx([0.9, 0.45, 1.0])  # each label's score; by hand: 1
    strict = CocoDetectionData(path, label_score=0.5).samples[0]
    assert [round(b[0]) for b in strict.boxes] == [10, 400]  # the 0.45 label is no longer an object ...
    assert sorted(round(b[0]) for b in strict.ignore) == [200, 600]  # ... but an ignore region, not background
    assert strict.scores.tolist() == pytest.approx([0.9, 1.0])
    assert CocoDetectionData(path).annotated(0).scores.tolist() == pytest.approx([0.9, 0.45, 1.0])  # to the augmenter


def test_still_animals_in_a_clip_are_dropped_and_nothing_else(tmp_path):
    bird, car, photo_bird = [300, 400, 40, 30], [600, 50, 100, 60], [300, 400, 40, 30]
    images, anns = [], []

    def add(image_id: int, box: list, cat: int, crowd: int = 0) -> None:
        anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat, "bbox": box,
                     "area": box[2] * box[3], "iscrowd": crowd})

    for i in range(4):  # clip "cam": a bag the teacher calls "bird" in 3 frames (ignore in the 4th), a parked car, a dog walking
        images.append({"id": i + 1, "file_name": f"cam_{i * 4:06d}.jpg", "width": 768, "height": 576, "frame_index": i * 4})
        add(i + 1, bird, 2, crowd=int(i == 3))
        add(i + 1, car, 3)
        add(i + 1, [50 + 120 * i, 300, 60, 40], 4)
    images.append({"id": 5, "file_name": "park_000000.jpg", "width": 768, "height": 576, "frame_index": 0})
    add(5, bird, 2)  # clip "park": one frame only, nothing to compare with
    for i in (6, 7):  # a series of photos ("bird-1", "bird-2"), the bird at the same place in both: no clip
        images.append({"id": i, "file_name": f"bird-{i - 5}.jpg", "width": 768, "height": 576, "frame_index": i})
        add(i, photo_bird, 2)
    path = tmp_path / "clips.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": 1, "name": "person"}, {"id": 2, "name": "bird"}, {"id": 3, "name": "car"}, {"id": 4, "name": "dog"}]}))

    def birds(data: CocoDetectionData) -> list[int]:
        names = data.class_names
        return [s.image_id for s in data.samples
                for b, label in [*zip(s.boxes, s.labels, strict=True), *((b, -1) for b in s.ignore)]
                if label == names.index("bird") or (label == -1 and round(b[0]) == bird[0])]

    everything = CocoDetectionData(path)
    assert birds(everything) == [1, 2, 3, 4, 5, 6, 7] and everything.dropped_still == 0
    cleaned = CocoDetectionData(path, still_share=0.5)
    assert birds(cleaned) == [5, 6, 7]  # the clip's still "bird" (labels and the ignore region) is gone
    assert cleaned.dropped_still == 4
    names = cleaned.class_names
    for s in cleaned.samples[:4]:  # the parked car stays (cars stand still), the walking dog stays
        assert sorted(names[label] for label in s.labels) == ["car", "dog"]
    assert CocoDetectionData(path, still_share=1.0).dropped_still == 4  # at the same place in all 4 frames
    with pytest.raises(ValueError, match="still share"):
        CocoDetectionData(path, still_share=0.0)


def test_soft_cross_entropy_is_the_hard_loss_at_weight_one_and_splits_the_target_otherwise():
    from detector.ignore import soft_cross_entropy, soft_weights

    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, 0.2, 2.0]])
    labels = torch.tensor([0, 1, 2])
    ones = torch.ones(3)
    torch.testing.assert_close(soft_cross_entropy(logits, labels, ones), torch.nn.functional.cross_entropy(logits, labels))
    logp = torch.log_softmax(logits, dim=-1)
    w = torch.tensor([0.3, 0.8, 0.5])  # a negative's weight does not matter: its class is background
    expected = -(logp[0, 0] + 0.8 * logp[1, 1] + 0.2 * logp[1, 0] + 0.5 * logp[2, 2] + 0.5 * logp[2, 0]) / 3
    torch.testing.assert_close(soft_cross_entropy(logits, labels, w), expected)
    # weights: a positive takes its matched label's score, a negative 1, no scores → 1
    lab, idx, scores = torch.tensor([0, 3, 1, 0]), torch.tensor([1, 1, 0, 0]), torch.tensor([0.45, 0.9])
    assert soft_weights(lab, idx, scores).tolist() == pytest.approx([1.0, 0.9, 0.45, 1.0])
    assert soft_weights(lab, idx, None).tolist() == [1.0] * 4


def test_soft_labels_train_the_classifier_towards_the_labels_scores(sample_frames):
    """A training step on a real frame: with every score 1 the soft loss is the hard one (same RoIs
    sampled), with scores 0.5 it differs; the box loss does not depend on the scores."""
    image = torch.from_numpy(np.ascontiguousarray(sample_frames[0])).permute(2, 0, 1).float() / 255
    target = {"boxes": torch.tensor(PEOPLE, dtype=torch.float32), "labels": torch.ones(len(PEOPLE), dtype=torch.int64),
              "ignore": torch.zeros(0, 4)}

    def losses(soft: bool, scores: torch.Tensor | None) -> dict:
        model = use_ignore_regions(_model(2), soft_labels=soft).train()
        torch.manual_seed(1)  # the samplers draw from torch's generator: the same RoIs each time
        return model([image], [{**target, **({} if scores is None else {"scores": scores})}])

    hard, ones, halves = losses(False, None), losses(True, torch.ones(len(PEOPLE))), losses(True, torch.full((len(PEOPLE),), 0.5))
    torch.testing.assert_close(ones["loss_classifier"], hard["loss_classifier"])
    assert not torch.allclose(halves["loss_classifier"], hard["loss_classifier"])
    torch.testing.assert_close(halves["loss_box_reg"], hard["loss_box_reg"])
