"""RoI pooling with context: each RoI pooled as usual, plus the region around it at a coarse grid.

A head-and-shoulders crop of a person, pooled 7×7 on its own, looks like a whole head-and-shoulders
portrait; the same crop seen with the region around it (the rest of the body below it) does not.
``ContextRoIAlign`` gives the box head both: the RoI at ``k × k`` (as ``MultiScaleRoIAlign`` pools it)
and the RoI enlarged ``scale`` times about its centre, clipped to the picture, at ``c × c``, each
flattened and then concatenated, ``[K, C·k² + C·c²]``. The box head's first fc layer reads the
concatenation (``TwoMLPHead`` flattens its input, so it is unchanged but for its width).

``BorderFeatures`` adds where each RoI lies against the picture's edges: a person cut by the
frame's bottom edge is a whole label (a webcam's head and shoulders), while the same head and
shoulders inside a whole person in the picture is a part, not a person. Pooled features at
strides 16 and 32 hardly tell the two apart; the RoI's distances to the four edges might (measured
as a training row in the model card: they did not raise precision).

``widen_first_fc`` turns a checkpoint trained without these inputs into one with them: the new input
columns of the first fc layer start at zero, so the widened model starts out giving exactly the
old model's detections and fine-tuning learns what the new inputs add.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import MultiScaleRoIAlign, clip_boxes_to_image

FIRST_FC = "roi_heads.box_head.fc6.weight"


def enlarge(boxes: torch.Tensor, scale: float) -> torch.Tensor:
    """``boxes`` (x1, y1, x2, y2) grown ``scale`` times about their centres."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * (scale / 2)
    return torch.cat([centre - half, centre + half], dim=1)


class ContextRoIAlign(nn.Module):
    """``MultiScaleRoIAlign``'s call, returning each RoI's pooled features and its context's, flat.

    Args:
        featmap_names: the feature levels to pool from (as for ``MultiScaleRoIAlign``).
        output_size: the RoI's grid, k (7 in the paper's head).
        scale: how many times the RoI's width and height the context covers (> 1).
        context_size: the context's grid, c.
    """

    def __init__(self, featmap_names: list[str], output_size: int = 7, scale: float = 2.0, context_size: int = 3) -> None:
        super().__init__()
        if scale <= 1.0:
            raise ValueError(f"the context scale must be > 1 (the RoI itself is 1); got {scale}")
        self.scale, self.context_size = float(scale), int(context_size)
        self.roi = MultiScaleRoIAlign(featmap_names=featmap_names, output_size=output_size, sampling_ratio=2)
        self.context = MultiScaleRoIAlign(featmap_names=featmap_names, output_size=context_size, sampling_ratio=2)

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor], image_shapes) -> torch.Tensor:
        inner = self.roi(features, proposals, image_shapes).flatten(1)
        grown = [clip_boxes_to_image(enlarge(p, self.scale), shape) for p, shape in zip(proposals, image_shapes, strict=True)]
        outer = self.context(features, grown, image_shapes).flatten(1)
        return torch.cat([inner, outer], dim=1)


BORDER_WIDTH = 8  # per RoI: its gap to each of the 4 edges, and how close it is to touching each
BORDER_TOUCH = 0.02  # a gap of this share of the picture's side reads as e^-1 ≈ 0.37 "touching"
# The 8 values in [0, 1] times this. A step of the first fc layer moves its output by ∝ Σ x²: the
# pooled features (RMS ~0.53 over 6 272 columns, v7 on the clip) give ~1 800; the 8 values, gaps of
# 0.2–0.5 (8–20 at 40) and one edge touched (40), give ~1 000–3 000, so the new columns learn about
# as fast as all the pooled ones together. At 4 they learned ~100× slower: after a 1 200-iteration
# fine-tune they moved fc6's outputs by ≤ 0.02.
BORDER_SCALE = 40.0


def border_features(boxes: torch.Tensor, image_shape: tuple[int, int]) -> torch.Tensor:
    """``Tensor[N, 4]`` boxes (x1, y1, x2, y2) in a picture of ``(height, width)`` →
    ``Tensor[N, 8]``: the gaps to the left, top, right and bottom edges as shares of the side
    (in [0, 1]), then ``exp(-gap / BORDER_TOUCH)`` for each (1 when touching), times ``BORDER_SCALE``."""
    h, w = float(image_shape[0]), float(image_shape[1])
    x1, y1, x2, y2 = boxes.unbind(1)
    gaps = torch.stack([x1 / w, y1 / h, (w - x2) / w, (h - y2) / h], dim=1).clamp(0.0, 1.0)
    return torch.cat([gaps, torch.exp(-gaps / BORDER_TOUCH)], dim=1) * BORDER_SCALE


class BorderFeatures(nn.Module):
    """A RoI pooler (``MultiScaleRoIAlign``'s call) whose flat output gains each RoI's
    ``border_features`` as ``BORDER_WIDTH`` more columns: ``[K, D] → [K, D + 8]``."""

    def __init__(self, pooler: nn.Module) -> None:
        super().__init__()
        self.pooler = pooler

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor], image_shapes) -> torch.Tensor:
        pooled = self.pooler(features, proposals, image_shapes).flatten(1)
        borders = [border_features(p, shape) for p, shape in zip(proposals, image_shapes, strict=True)]
        return torch.cat([pooled, torch.cat(borders).to(pooled.dtype)], dim=1)


def context_width(channels: int, context_size: int) -> int:
    """Input columns the context adds to the first fc layer."""
    return channels * context_size * context_size


def widen_first_fc(state: dict[str, torch.Tensor], width: int) -> dict[str, torch.Tensor]:
    """A copy of ``state`` whose first box-head fc layer takes ``width`` more inputs (the context's),
    their weights zero: the widened model's outputs equal the original's."""
    if FIRST_FC not in state:
        raise ValueError(f"the state dict has no {FIRST_FC}: not a two-fc box head")
    weight = state[FIRST_FC]
    out = dict(state)
    out[FIRST_FC] = torch.cat([weight, weight.new_zeros(weight.shape[0], width)], dim=1)
    return out
