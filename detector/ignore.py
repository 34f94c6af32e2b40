"""An ignore label for Faster R-CNN's two samplers: regions that are neither object nor background.

Training targets may carry ``"ignore": Tensor[M, 4]`` (x1, y1, x2, y2, in the same resized pixels as
``"boxes"``): the autolabeller's uncertain teacher boxes (COCO ``iscrowd=1``) and objects cut by an
augmentation crop. torchvision's samplers have no such label, so these regions used to be dropped and
then learnt as background (v2 missed the car cut by the frame edge that way).

Here an anchor, or an RoI proposal, that its matcher called *background* (label 0) becomes label −1
(torchvision's "between thresholds": never sampled, in neither loss) when it overlaps an ignore box:

* IoA ≥ ``ioa`` (default 0.5) — the share of the anchor's own area that lies inside the ignore box.
  An ignore region is a place where an object may be, of unknown extent; a window mostly inside it may
  show (part of) that object, so it must not be taught as background. Same rule and value as mmdetection's
  ``ignore_iof_thr=0.5``; Detectron's crowd filter uses the same measure at 0.7.
* or IoU ≥ the matcher's own background boundary (RPN: 0.3, RoI head: 0.5): an anchor that would not
  have been a negative had the ignore box been a ground-truth box (this catches a large anchor around a
  small ignore box, whose IoA is low).

Positives stay positive: a labelled object overlapping an ignore region is still learnt.

**Part negatives** (RoI head, ``part_fraction`` > 0): a background RoI that lies mostly inside a labelled
object (IoA ≥ ``part_cover``, IoU < the positive threshold: a head, a torso, a hand of a person) is
a *part*. torchvision's sampler draws its negatives uniformly, and on a picture of one person most
negatives are empty background, so the head rarely sees the few parts the RPN proposes and learns to
call them "person" (v3 put six person boxes on a portrait). With ``part_fraction`` = f, up to f of each
image's sampled negatives are parts (the rest as before; a shortfall of either is filled by the other),
so the classifier is taught "part of a person is background" every iteration. Measured on v3
(docs/model_v4_rows.json), it did not cut the part boxes: a head pooled 7×7 looks like a portrait,
which is a whole person label. The positive IoU (``fg_iou``, paper 0.5) can be raised too: RoIs
between the background boundary and it are then neither — that did (v4 trains with 0.6).

Only the training-time target assignment changes, by subclassing the two ``assign_targets_to_*`` methods
around torchvision's own matchers, ``box_iou`` and samplers; inference, parameters and state-dict
keys are untouched, so every checkpoint loads into a model with or without them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import box_iou

from detector.boxes import pairwise_ioa

DEFAULT_IOA = 0.5
DEFAULT_PART_COVER = 0.7  # detector.precision calls a false box a part at the same share


def ignore_overlap(boxes: Tensor, ignore: Tensor) -> tuple[Tensor, Tensor]:
    """(IoA, IoU) of each box with the ignore boxes, each the maximum over them: Tensor[N] twice.
    IoA = area(box ∩ ignore) / area(box) (``detector.boxes.pairwise_ioa``)."""
    if ignore.numel() == 0 or boxes.numel() == 0:
        zeros = boxes.new_zeros(boxes.shape[0])
        return zeros, zeros
    return pairwise_ioa(boxes, ignore).max(dim=1).values, box_iou(boxes, ignore).max(dim=1).values


def ignored(boxes: Tensor, ignore: Tensor | None, ioa: float, iou: float) -> Tensor:
    """Bool[N]: which of ``boxes`` [N, 4] overlap an ignore box by IoA ≥ ``ioa`` or IoU ≥ ``iou``."""
    if ignore is None or ignore.numel() == 0:
        return torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    box_ioa, box_iou_max = ignore_overlap(boxes, ignore.to(boxes))
    return (box_ioa >= ioa) | (box_iou_max >= iou)


def ignore_negatives(labels: Tensor, boxes: Tensor, ignore: Tensor | None, ioa: float, iou: float) -> None:
    """In place: negatives (label 0) of one image that lie on an ignore region → −1.

    An image must keep at least one sample: when the ignore regions would take every negative and
    the image has no positive (a zoom crop inside one uncertain region), the negative least inside
    them stays. Otherwise a batch of such images samples nothing, and the samplers' losses are a
    mean over nothing — NaN (this ended a 45-minute run at iteration 838).
    """
    mask = ignored(boxes, ignore, ioa, iou) & (labels == 0)
    if not mask.any():
        return
    if not (labels[~mask] >= 0).any():
        box_ioa, _ = ignore_overlap(boxes, ignore.to(boxes))
        keep = torch.where(mask, box_ioa, torch.full_like(box_ioa, float("inf"))).argmin()
        mask[keep] = False
    labels[mask] = -1


class IgnoreAwareRPN(RegionProposalNetwork):
    """torchvision's RPN whose negative anchors exclude the targets' ``"ignore"`` regions."""

    ignore_ioa: float = DEFAULT_IOA

    @classmethod
    def like(cls, rpn: RegionProposalNetwork, ioa: float = DEFAULT_IOA) -> IgnoreAwareRPN:
        """A copy of ``rpn``'s settings around the same submodules (anchor generator, head)."""
        new = cls(rpn.anchor_generator, rpn.head,
                  fg_iou_thresh=rpn.proposal_matcher.high_threshold, bg_iou_thresh=rpn.proposal_matcher.low_threshold,
                  batch_size_per_image=rpn.fg_bg_sampler.batch_size_per_image,
                  positive_fraction=rpn.fg_bg_sampler.positive_fraction,
                  pre_nms_top_n=dict(rpn._pre_nms_top_n), post_nms_top_n=dict(rpn._post_nms_top_n),
                  nms_thresh=rpn.nms_thresh, score_thresh=rpn.score_thresh)
        new.ignore_ioa = float(ioa)
        new.train(rpn.training)
        return new

    def assign_targets_to_anchors(self, anchors: list[Tensor], targets: list[dict[str, Tensor]]
                                  ) -> tuple[list[Tensor], list[Tensor]]:
        """torchvision's assignment (labels Tensor[A] per image: 1 positive, 0 negative, −1 neither),
        then negatives on an ignore region → −1."""
        labels, matched_gt_boxes = super().assign_targets_to_anchors(anchors, targets)
        for labels_per_image, anchors_per_image, target in zip(labels, anchors, targets, strict=True):
            ignore_negatives(labels_per_image, anchors_per_image, target.get("ignore"), self.ignore_ioa,
                             self.proposal_matcher.low_threshold)
        return labels, matched_gt_boxes


def part_negatives(labels: Tensor, proposals: Tensor, gt_boxes: Tensor, cover: float) -> Tensor:
    """Bool[P]: background proposals (label 0) with ≥ ``cover`` of their own area inside one ground-truth box."""
    if gt_boxes.numel() == 0 or proposals.numel() == 0:
        return torch.zeros(proposals.shape[0], dtype=torch.bool, device=proposals.device)
    inside, _ = ignore_overlap(proposals, gt_boxes)  # IoA against the labels: the same measure
    return (labels == 0) & (inside >= cover)


def sample_with_parts(labels: Tensor, parts: Tensor, batch_size: int, positive_fraction: float,
                      part_fraction: float, generator: torch.Generator | None = None) -> Tensor:
    """Indices of one image's sampled RoIs: torchvision's count of positives (≤ ``batch_size`` ·
    ``positive_fraction``) and negatives (the rest), of which up to ``part_fraction`` are ``parts``."""
    pos = torch.where(labels >= 1)[0]
    neg_part = torch.where((labels == 0) & parts)[0]
    neg_rest = torch.where((labels == 0) & ~parts)[0]
    num_pos = min(int(batch_size * positive_fraction), pos.numel())
    num_neg = min(batch_size - num_pos, neg_part.numel() + neg_rest.numel())
    num_part = min(int(round(num_neg * part_fraction)), neg_part.numel())
    num_rest = min(num_neg - num_part, neg_rest.numel())
    num_part = num_neg - num_rest  # too few other negatives: more parts (never more than there are)

    def pick(idx: Tensor, n: int) -> Tensor:
        return idx[torch.randperm(idx.numel(), device=idx.device, generator=generator)[:n]]

    return torch.cat([pick(pos, num_pos), pick(neg_part, num_part), pick(neg_rest, num_rest)])


class IgnoreAwareRoIHeads(RoIHeads):
    """torchvision's RoI heads whose background RoIs exclude the targets' ``"ignore"`` regions, and
    which may over-sample part negatives (see the module docstring)."""

    ignore_ioa: float = DEFAULT_IOA
    part_fraction: float = 0.0
    part_cover: float = DEFAULT_PART_COVER

    @classmethod
    def like(cls, heads: RoIHeads, ioa: float = DEFAULT_IOA) -> IgnoreAwareRoIHeads:
        """A copy of ``heads``' settings around the same submodules (RoI pooling, fc head, predictor)."""
        if heads.has_mask() or heads.has_keypoint():
            raise ValueError("the ignore label is implemented for box-only RoI heads (Faster R-CNN)")
        new = cls(heads.box_roi_pool, heads.box_head, heads.box_predictor,
                  fg_iou_thresh=heads.proposal_matcher.high_threshold, bg_iou_thresh=heads.proposal_matcher.low_threshold,
                  batch_size_per_image=heads.fg_bg_sampler.batch_size_per_image,
                  positive_fraction=heads.fg_bg_sampler.positive_fraction, bbox_reg_weights=heads.box_coder.weights,
                  score_thresh=heads.score_thresh, nms_thresh=heads.nms_thresh,
                  detections_per_img=heads.detections_per_img)
        new.ignore_ioa = float(ioa)
        new.train(heads.training)
        return new

    def select_training_samples(self, proposals, targets):
        # torchvision's assign_targets_to_proposals gets the gt boxes and labels but not the targets:
        # the ignore boxes are handed to it through this attribute for the length of one call
        self._ignore_boxes = [t.get("ignore") for t in targets] if targets is not None else None
        try:
            return super().select_training_samples(proposals, targets)
        finally:
            self._ignore_boxes = None

    def assign_targets_to_proposals(self, proposals, gt_boxes, gt_labels):
        """torchvision's assignment (labels Tensor[P] per image: class, 0 background, −1 neither),
        then background proposals on an ignore region → −1."""
        matched_idxs, labels = super().assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
        ignore_boxes = getattr(self, "_ignore_boxes", None) or [None] * len(proposals)
        for labels_per_image, proposals_per_image, ignore in zip(labels, proposals, ignore_boxes, strict=True):
            ignore_negatives(labels_per_image, proposals_per_image, ignore, self.ignore_ioa,
                             self.proposal_matcher.low_threshold)
        self._parts = ([part_negatives(lab, prop, gt, self.part_cover)
                        for lab, prop, gt in zip(labels, proposals, gt_boxes, strict=True)]
                       if self.part_fraction > 0 else None)
        return matched_idxs, labels

    def subsample(self, labels: list[Tensor]) -> list[Tensor]:
        parts = getattr(self, "_parts", None)
        if parts is None:
            return super().subsample(labels)
        self._parts = None
        sampler = self.fg_bg_sampler
        return [sample_with_parts(lab, part, sampler.batch_size_per_image, sampler.positive_fraction,
                                  self.part_fraction) for lab, part in zip(labels, parts, strict=True)]


def use_ignore_regions(model: nn.Module, ioa: float = DEFAULT_IOA, part_fraction: float = 0.0,
                       fg_iou: float | None = None) -> nn.Module:
    """Give a torchvision ``FasterRCNN`` (any builder) the ignore label, in place; returns ``model``.
    ``part_fraction``: the share of the RoI head's negatives drawn from part negatives (0 = uniform, as
    torchvision); ``fg_iou``: the RoI head's positive IoU (None = keep the model's).

    Calling it again only changes the thresholds. The parameters stay the same objects, so an optimizer
    built before or after sees the same tensors.
    """
    if not 0.0 < ioa <= 1.0:
        raise ValueError(f"ignore IoA threshold {ioa!r} must be in (0, 1]")
    if not 0.0 <= part_fraction <= 1.0:
        raise ValueError(f"part-negative fraction {part_fraction!r} must be in [0, 1]")
    if isinstance(model.rpn, IgnoreAwareRPN):
        model.rpn.ignore_ioa = float(ioa)
    else:
        model.rpn = IgnoreAwareRPN.like(model.rpn, ioa)
    if isinstance(model.roi_heads, IgnoreAwareRoIHeads):
        model.roi_heads.ignore_ioa = float(ioa)
    else:
        model.roi_heads = IgnoreAwareRoIHeads.like(model.roi_heads, ioa)
    model.roi_heads.part_fraction = float(part_fraction)
    if fg_iou is not None:
        low = model.roi_heads.proposal_matcher.low_threshold
        if not low <= fg_iou <= 1.0:
            raise ValueError(f"RoI positive IoU {fg_iou!r} must be in [{low}, 1] (the background boundary is {low})")
        model.roi_heads.proposal_matcher = Matcher(float(fg_iou), low, allow_low_quality_matches=False)
    return model
