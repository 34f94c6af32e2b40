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

**Hard negatives** (RoI head, ``hard_fraction`` > 0; online hard example mining, Shrivastava et al.
2016, on the negatives only): before sampling, the head scores every background RoI of the batch
without gradients; up to ``hard_fraction`` of each image's negatives are those it calls an object most
surely (1 − p(background), after NMS at IoU 0.7 among them so that one hard place is not taken 30
times), the rest uniform as before. Where the part-negative rule picks parts by their geometry, this
picks what the head itself gets wrong — a torso it scores "person", a bag it scores "bird".

**Soft labels** (RoI head, ``soft_labels``): the classifier's target for a positive RoI puts its
label's ``"scores"`` (the teachers' fused confidence) on the class and the rest on background, the
teacher's soft class score in place of 1; negatives and the box loss are as before.

Only training changes — the target assignment, by subclassing the two ``assign_targets_to_*`` methods
around torchvision's own matchers, ``box_iou`` and samplers, and with soft labels the classifier's loss;
inference, parameters and state-dict keys are untouched, so every checkpoint loads into a model with
or without them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import box_iou, nms

from detector.boxes import pairwise_ioa

DEFAULT_IOA = 0.5
DEFAULT_PART_COVER = 0.7  # detector.precision calls a false box a part at the same share
HARD_NMS_IOU = 0.7  # OHEM's NMS among the hard negatives


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


def sample_with_parts(labels: Tensor, parts: Tensor | None, batch_size: int, positive_fraction: float,
                      part_fraction: float, generator: torch.Generator | None = None,
                      hard: Tensor | None = None) -> Tensor:
    """Indices of one image's sampled RoIs: torchvision's count of positives (≤ ``batch_size`` ·
    ``positive_fraction``) and negatives (the rest), of which up to ``part_fraction`` are ``parts``
    (Bool[P], drawn at random) — or, given ``hard`` (indices of negatives, hardest first), the first of
    those. The other negatives are drawn uniformly; where they run short, more of the preferred ones."""
    def pick(idx: Tensor, n: int | None = None) -> Tensor:
        return idx[torch.randperm(idx.numel(), device=idx.device, generator=generator)[:n]]

    pos = torch.where(labels >= 1)[0]
    num_pos = min(int(batch_size * positive_fraction), pos.numel())
    negatives = labels == 0
    num_neg = min(batch_size - num_pos, int(negatives.sum()))
    preferred = pick(torch.where(negatives & parts)[0]) if hard is None else hard
    num_preferred = min(int(round(num_neg * part_fraction)), preferred.numel())
    taken = torch.zeros_like(negatives)
    taken[preferred if hard is None else preferred[:num_preferred]] = True
    # preferred first, then the others at random, then (parts only) the parts not taken
    order = [preferred[:num_preferred], pick(torch.where(negatives & ~taken)[0])]
    if hard is None:
        order.append(preferred[num_preferred:])
    return torch.cat([pick(pos, num_pos), torch.cat(order)[:num_neg]])


def soft_weights(labels: Tensor, matched_idxs: Tensor, scores: Tensor | None) -> Tensor:
    """One image's sampled RoIs → the weight of their class in the target: a positive's label's
    ``score`` (the teacher's confidence), 1 for a negative (all background) and without scores."""
    weights = torch.ones(labels.shape, dtype=torch.float32, device=labels.device)
    positive = labels > 0
    if scores is not None and positive.any():
        weights[positive] = scores.float()[matched_idxs[positive]]
    return weights


def soft_cross_entropy(logits: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
    """The classifier's loss against soft targets: ``weights`` on each RoI's class, the rest on
    background, ``−(w·log p(class) + (1 − w)·log p(background))``, averaged (a negative, class 0, is
    ``−log p(background)``: the hard loss)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    own = logp.gather(1, labels[:, None]).squeeze(1)
    return -(weights * own + (1.0 - weights) * logp[:, 0]).mean()


def hardest_negatives(labels: Tensor, proposals: Tensor, object_prob: Tensor) -> Tensor:
    """Indices of one image's negatives (label 0), the head's surest object first, after NMS at
    ``HARD_NMS_IOU`` among them (``object_prob``: 1 − p(background) of every proposal)."""
    neg = torch.where(labels == 0)[0]
    if neg.numel() == 0:
        return neg
    return neg[nms(proposals[neg].float(), object_prob[neg].float(), HARD_NMS_IOU)]


class IgnoreAwareRoIHeads(RoIHeads):
    """torchvision's RoI heads whose background RoIs exclude the targets' ``"ignore"`` regions, and
    which may over-sample part negatives (see the module docstring)."""

    ignore_ioa: float = DEFAULT_IOA
    part_fraction: float = 0.0
    part_cover: float = DEFAULT_PART_COVER
    hard_fraction: float = 0.0
    soft_labels: bool = False

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

    def forward(self, features, proposals, image_shapes, targets=None):
        # hard-negative mining scores the candidates with the head itself: it needs the feature maps
        self._mining = (features, image_shapes) if self.training and self.hard_fraction > 0 else None
        try:
            if self.training and self.soft_labels:
                return self._soft_forward(features, proposals, image_shapes, targets)
            return super().forward(features, proposals, image_shapes, targets)
        finally:
            self._mining = None

    def _soft_forward(self, features, proposals, image_shapes, targets):
        """torchvision's training step with the classifier's targets soft (``soft_cross_entropy``: a
        positive's class at its label's ``"scores"``, the teacher's confidence); the box loss as before."""
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        logits, box_regression = self.box_predictor(self.box_head(self.box_roi_pool(features, proposals, image_shapes)))
        _, loss_box = fastrcnn_loss(logits, box_regression, labels, regression_targets)
        weights = torch.cat([soft_weights(lab, idx, t.get("scores"))
                             for lab, idx, t in zip(labels, matched_idxs, targets, strict=True)])
        return [], {"loss_classifier": soft_cross_entropy(logits, torch.cat(labels), weights), "loss_box_reg": loss_box}

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
        self._hard = self._hardest(labels, proposals) if getattr(self, "_mining", None) is not None else None
        return matched_idxs, labels

    @torch.no_grad()
    def _hardest(self, labels: list[Tensor], proposals: list[Tensor]) -> list[Tensor]:
        """Per image, ``hardest_negatives`` as the head scores them now (no gradients)."""
        features, image_shapes = self._mining
        features = {k: v.detach() for k, v in features.items()}
        logits, _ = self.box_predictor(self.box_head(self.box_roi_pool(features, proposals, image_shapes)))
        object_prob = 1.0 - torch.softmax(logits.float(), dim=-1)[:, 0]
        counts = [p.shape[0] for p in proposals]
        return [hardest_negatives(lab, prop, prob)
                for lab, prop, prob in zip(labels, proposals, object_prob.split(counts), strict=True)]

    def subsample(self, labels: list[Tensor]) -> list[Tensor]:
        parts, hard = getattr(self, "_parts", None), getattr(self, "_hard", None)
        self._parts = self._hard = None
        sampler = self.fg_bg_sampler
        if hard is not None:
            return [sample_with_parts(lab, None, sampler.batch_size_per_image, sampler.positive_fraction,
                                      self.hard_fraction, hard=h) for lab, h in zip(labels, hard, strict=True)]
        if parts is None:
            return super().subsample(labels)
        return [sample_with_parts(lab, part, sampler.batch_size_per_image, sampler.positive_fraction,
                                  self.part_fraction) for lab, part in zip(labels, parts, strict=True)]


def use_ignore_regions(model: nn.Module, ioa: float = DEFAULT_IOA, part_fraction: float = 0.0,
                       fg_iou: float | None = None, hard_fraction: float = 0.0, soft_labels: bool = False) -> nn.Module:
    """Give a torchvision ``FasterRCNN`` (any builder) the ignore label, in place; returns ``model``.
    ``part_fraction``: the share of the RoI head's negatives drawn from part negatives (0 = uniform, as
    torchvision); ``fg_iou``: the RoI head's positive IoU (None = keep the model's); ``hard_fraction``:
    the share drawn from the negatives the head scores surest as objects (hard-negative mining);
    ``soft_labels``: the classifier learns each positive's class at its label's score (``"scores"``).

    Calling it again only changes the thresholds. The parameters stay the same objects, so an optimizer
    built before or after sees the same tensors.
    """
    if not 0.0 < ioa <= 1.0:
        raise ValueError(f"ignore IoA threshold {ioa!r} must be in (0, 1]")
    if not 0.0 <= part_fraction <= 1.0:
        raise ValueError(f"part-negative fraction {part_fraction!r} must be in [0, 1]")
    if not 0.0 <= hard_fraction <= 1.0:
        raise ValueError(f"hard-negative fraction {hard_fraction!r} must be in [0, 1]")
    if part_fraction and hard_fraction:
        raise ValueError("part negatives and hard negatives are two ways to choose the same negatives: use one")
    if isinstance(model.rpn, IgnoreAwareRPN):
        model.rpn.ignore_ioa = float(ioa)
    else:
        model.rpn = IgnoreAwareRPN.like(model.rpn, ioa)
    if isinstance(model.roi_heads, IgnoreAwareRoIHeads):
        model.roi_heads.ignore_ioa = float(ioa)
    else:
        model.roi_heads = IgnoreAwareRoIHeads.like(model.roi_heads, ioa)
    model.roi_heads.part_fraction = float(part_fraction)
    model.roi_heads.hard_fraction = float(hard_fraction)
    model.roi_heads.soft_labels = bool(soft_labels)
    if fg_iou is not None:
        low = model.roi_heads.proposal_matcher.low_threshold
        if not low <= fg_iou <= 1.0:
            raise ValueError(f"RoI positive IoU {fg_iou!r} must be in [{low}, 1] (the background boundary is {low})")
        model.roi_heads.proposal_matcher = Matcher(float(fg_iou), low, allow_low_quality_matches=False)
    return model
