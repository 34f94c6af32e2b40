"""Box measures beyond torchvision's: the share of a box inside another, and the suppression of a box
lying inside a higher-scoring box of its class (a head or torso inside the person's own box).

Both are built on ``torchvision.ops.box_iou`` and ``box_area``: with areas A (box) and B (region),
IoU = I / (A + B − I) gives the intersection I = IoU · (A + B) / (1 + IoU) exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_area, box_iou


def pairwise_ioa(boxes: Tensor, regions: Tensor) -> Tensor:
    """[N, M]: the share of each box's own area (``boxes`` [N, 4], x1y1x2y2) inside each region [M, 4]."""
    if boxes.numel() == 0 or regions.numel() == 0:
        return boxes.new_zeros((boxes.shape[0], regions.shape[0]))
    iou = box_iou(boxes, regions)
    a = box_area(boxes)[:, None]
    b = box_area(regions)[None, :]
    return iou * (a + b) / (1.0 + iou) / a.clamp(min=1e-6)


def contained_in_higher(boxes: Tensor, scores: Tensor, labels: Tensor, share: float) -> Tensor:
    """Bool[N]: the boxes with at least ``share`` of their area inside a higher-scoring box of the same
    label that is itself kept (taken greedily by descending score, as NMS takes them)."""
    n = boxes.shape[0]
    drop = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    if n < 2:
        return drop
    order = torch.argsort(scores, descending=True, stable=True)
    inside = pairwise_ioa(boxes[order], boxes[order]) >= share  # [i, j]: box i inside box j
    same = labels[order][:, None] == labels[order][None, :]
    higher = torch.ones(n, n, dtype=torch.bool, device=boxes.device).tril(-1)  # j ranks above i
    candidates = inside & same & higher
    dropped = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    for i in range(1, n):
        if (candidates[i] & ~dropped).any():
            dropped[i] = True
    drop[order] = dropped
    return drop
