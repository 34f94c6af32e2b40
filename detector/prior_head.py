"""A Fast R-CNN box head that starts from a teacher's classification: the paper's two fc layers,
softmax classifier and per-class box regressor, plus a prior read from class-logit maps.

When the backbone's maps carry per-class logit channels (``backbone.prior_channels``, e.g. the
``nanodet`` backbone with its "head" neck: NanoDet's own 80-class maps, trained further), the RoI's
pooled logits at its centre (the mean of the central 3×3 of the 7×7 grid — where a centre-based
detector such as NanoDet scores an object) are added to the fc classifier's output:

    class_logits[:, 1:] = fc_cls(h)[:, 1:] + prior,    class_logits[:, 0] = fc_cls(h)[:, 0] + b

with ``fc_cls`` initialised to zero and ``b`` a learnt background logit (0 at the start). Sigmoid-
calibrated logits make a sensible softmax from the first iteration: on a background RoI every class
logit is very negative, so the background wins; on a person, e^l_person dominates. The fc layers then
learn what the prior gets wrong; the box regressor learns from scratch as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection.faster_rcnn import TwoMLPHead

CENTRE = slice(2, 5)  # the central 3×3 cells of a 7×7 RoI grid


class TwoMLPHeadWithPrior(nn.Module):
    """``x: Tensor[K, C, S, S]`` (RoI-aligned maps) → ``Tensor[K, R + P]``: the two fc layers' output
    (R = ``representation_size``) followed by the P prior logits pooled at the RoI's centre."""

    def __init__(self, in_channels: int, roi_size: int, representation_size: int, prior_channels: tuple[int, int]) -> None:
        super().__init__()
        if roi_size != 7:
            raise ValueError(f"the class prior reads the centre of a 7×7 RoI grid; roi_output_size is {roi_size}")
        self.mlp = TwoMLPHead(in_channels * roi_size**2, representation_size)
        self.prior = slice(*prior_channels)
        self.representation_size = representation_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prior = x[:, self.prior, CENTRE, CENTRE].mean((2, 3))
        return torch.cat((self.mlp(x), prior), 1)


class PriorPredictor(nn.Module):
    """``Tensor[K, R + P]`` → (class logits ``[K, num_classes]``, box deltas ``[K, num_classes · 4]``).

    ``num_classes`` includes the background (index 0); the P prior logits are the classes 1..P in order."""

    def __init__(self, representation_size: int, num_classes: int) -> None:
        super().__init__()
        self.representation_size = representation_size
        self.cls_score = nn.Linear(representation_size, num_classes)
        self.bbox_pred = nn.Linear(representation_size, num_classes * 4)
        self.background = nn.Parameter(torch.zeros(1))
        nn.init.zeros_(self.cls_score.weight)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, prior = x[:, : self.representation_size], x[:, self.representation_size:]
        if prior.shape[1] != self.cls_score.out_features - 1:
            raise ValueError(f"the prior has {prior.shape[1]} class logits; the predictor has "
                             f"{self.cls_score.out_features - 1} classes")
        logits = self.cls_score(h) + torch.cat((self.background.expand(len(prior), 1), prior), 1)
        return logits, self.bbox_pred(h)
