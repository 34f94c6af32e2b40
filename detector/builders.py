"""Model builders, by name: the paper's Faster R-CNN and torchvision's COCO detectors.

Everything is assembled from torchvision's tested parts (AnchorGenerator, RegionProposalNetwork,
RoIHeads, MultiScaleRoIAlign, ops.nms); nothing here re-implements NMS, IoU or RoI pooling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import detection
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign, roi_pool

from detector.backbones import build_backbone
from detector.context_roi import BORDER_WIDTH, BorderFeatures, ContextRoIAlign, context_width
from detector.prior_head import PriorPredictor, TwoMLPHeadWithPrior

TORCHVISION_MODELS = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
)
PAPER = "paper"
CONTEXT_SIZE = 3  # the grid of the context pooled around each RoI when roi_context is set
BOX_HEADS = ("fc", "prior")
DEFAULT = "default"  # the bundled checkpoint in assets/ (a ``paper`` model)
MODEL_NAMES = (DEFAULT, PAPER, *TORCHVISION_MODELS)

# 91 entries, index 0 = background, 'N/A' for ids unused by COCO; read from the weights' metadata,
# which is available offline (only the tensors are downloaded).
COCO_CLASS_NAMES: tuple[str, ...] = tuple(detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])

# The paper's anchors: 3 scales × 3 aspect ratios = k = 9 per position (ratio = height / width).
PAPER_ANCHOR_SIZES: tuple[tuple[int, ...], ...] = ((128, 256, 512),)
PAPER_ASPECT_RATIOS: tuple[float, ...] = (0.5, 1.0, 2.0)


def default_anchor_sizes(levels: int) -> tuple[tuple[int, ...], ...]:
    """k = 9 anchors per position on every level: 3 sizes × the 3 ratios. One level: the paper's
    128/256/512. Several: 3 · levels sizes spaced geometrically from 16 to 512 px, finest level first
    (two levels: 16/32/64 and 128/256/512, the default model's)."""
    if levels == 1:
        return PAPER_ANCHOR_SIZES
    n = 3 * levels
    sizes = [int(round(16 * 32 ** (i / (n - 1)))) for i in range(n)]
    return tuple(tuple(sizes[3 * level: 3 * level + 3]) for level in range(levels))

# The paper's training settings (Ren et al. 2015, §3.1.3 and §3.2), as torchvision keyword arguments.
PAPER_TRAINING = dict(
    rpn_fg_iou_thresh=0.7,  # IoU ≥ 0.7 with a ground-truth box → positive anchor
    rpn_bg_iou_thresh=0.3,  # IoU < 0.3 with every ground-truth box → negative anchor
    rpn_batch_size_per_image=256,  # 256 anchors per image ...
    rpn_positive_fraction=0.5,  # ... at most 128 of them positive
    rpn_pre_nms_top_n_train=12000,
    rpn_post_nms_top_n_train=2000,
    rpn_nms_thresh=0.7,
    box_batch_size_per_image=128,  # Fast R-CNN: 128 RoIs per image, 25 % foreground
    box_positive_fraction=0.25,
    box_fg_iou_thresh=0.5,
    box_bg_iou_thresh=0.5,
)


def build_paper(
    num_classes: int,
    backbone: str = "mobilenet_v2",
    anchor_sizes: Sequence[Sequence[int]] | None = PAPER_ANCHOR_SIZES,
    aspect_ratios: Sequence[float] = PAPER_ASPECT_RATIOS,
    representation_size: int = 1024,
    roi_output_size: int = 7,
    roi_op: str = "align",
    reduce_channels: int | None = 256,
    min_size: int = 600,
    max_size: int = 1000,
    backbone_kwargs: dict | None = None,
    box_head: str = "fc",
    roi_context: float | None = None,
    roi_borders: bool = False,
    **faster_rcnn_kwargs,
) -> FasterRCNN:
    """The Faster R-CNN of Ren et al.: a shared conv backbone, an RPN with k anchors per position,
    RoI pooling to ``roi_output_size``² into a two-layer fc head, softmax classifier and per-class
    box regressor.

    Args:
        num_classes: number of classes including the background (index 0).
        backbone: a name registered in ``detector.backbones``.
        anchor_sizes: one tuple of anchor sizes (pixels) per backbone level, all the same length;
            with the 3 ``aspect_ratios`` this gives k = len(sizes) × 3 anchors per position.
            None = ``default_anchor_sizes`` for the backbone's number of levels.
        roi_op: "align" (RoIAlign over all levels, torchvision's default) or "pool" (the paper's
            RoI max pooling, on a single-level backbone).
        reduce_channels: width of the 1×1 conv put after backbones wider than it.
        min_size, max_size: the test/train resize of the transform (paper: 600 / 1000).
        backbone_kwargs: passed to the backbone's builder (e.g. ``{"neck": "head"}`` for ``nanodet``).
        box_head: "fc" (the paper's two fc layers, softmax classifier, box regressor) or "prior": the
            same, plus a class prior read from the backbone's class-logit channels
            (``detector.prior_head``; needs a backbone with ``prior_channels``).
        roi_context: None, or pool beside each RoI the RoI enlarged this many times (> 1) at 3×3, for the
            fc head to read (``detector.context_roi``).
        roi_borders: the fc head also reads each RoI's distances to the picture's four edges
            (``detector.context_roi.BorderFeatures``).
    """
    if box_head not in BOX_HEADS:
        raise ValueError(f"box_head {box_head!r} is unknown; expected one of {', '.join(BOX_HEADS)}")
    body = build_backbone(backbone, reduce_channels=reduce_channels, **(backbone_kwargs or {}))
    levels = len(body.strides)
    if anchor_sizes is None:
        anchor_sizes = default_anchor_sizes(levels)
    anchor_sizes = tuple(tuple(int(s) for s in level) for level in anchor_sizes)
    if len(anchor_sizes) != levels:
        raise ValueError(
            f"anchor_sizes has {len(anchor_sizes)} levels but backbone {backbone!r} gives {levels} feature maps"
        )
    if len({len(level) for level in anchor_sizes}) != 1:
        raise ValueError(f"every level needs the same number of anchor sizes; got {anchor_sizes}")
    anchors = AnchorGenerator(sizes=anchor_sizes, aspect_ratios=(tuple(aspect_ratios),) * levels)
    names = [str(i) for i in range(levels)]
    align = MultiScaleRoIAlign(featmap_names=names, output_size=roi_output_size, sampling_ratio=2)
    extra_inputs = 0
    if roi_context is not None:
        if roi_op != "align" or box_head != "fc":
            raise ValueError(f"roi_context needs roi_op 'align' and box_head 'fc'; got {roi_op!r} and {box_head!r}")
        extra_inputs = context_width(body.out_channels, CONTEXT_SIZE)
    if roi_borders:
        if box_head != "fc":
            raise ValueError(f"roi_borders needs box_head 'fc'; got {box_head!r}")
        extra_inputs += BORDER_WIDTH
    if roi_op not in ("align", "pool"):
        raise ValueError(f"roi_op {roi_op!r} is unknown; expected 'align' or 'pool'")
    if roi_op == "pool" and levels != 1:
        raise ValueError(f"roi_op 'pool' needs a single-level backbone; {backbone!r} gives {levels} levels")
    if box_head == "prior":
        if getattr(body, "prior_channels", None) is None:
            raise ValueError(f"box_head 'prior' needs a backbone with class-logit maps; {backbone!r} with "
                             f"{backbone_kwargs or {}} has none (nanodet with neck 'head' has)")
        head = TwoMLPHeadWithPrior(body.out_channels, roi_output_size, representation_size, body.prior_channels)
        predictor = PriorPredictor(representation_size, num_classes)
    else:
        head = TwoMLPHead(body.out_channels * roi_output_size**2 + extra_inputs, representation_size)
        predictor = FastRCNNPredictor(representation_size, num_classes)
    settings = {**PAPER_TRAINING, **faster_rcnn_kwargs}
    model = FasterRCNN(
        body,
        num_classes=None,
        min_size=min_size,
        max_size=max_size,
        image_mean=body.image_mean,
        image_std=body.image_std,
        rpn_anchor_generator=anchors,
        box_roi_pool=align,
        box_head=head,
        box_predictor=predictor,
        **settings,
    )
    if roi_op == "pool":  # FasterRCNN's constructor accepts only MultiScaleRoIAlign: swap it in after
        model.roi_heads.box_roi_pool = RoIPool(names[0], roi_output_size, body.strides[0])
    if roi_context is not None:
        model.roi_heads.box_roi_pool = ContextRoIAlign(names, roi_output_size, scale=roi_context, context_size=CONTEXT_SIZE)
    if roi_borders:
        model.roi_heads.box_roi_pool = BorderFeatures(model.roi_heads.box_roi_pool)
    return model


class RoIPool(nn.Module):
    """The paper's RoI max pooling (``torchvision.ops.roi_pool``) with the interface that
    ``RoIHeads`` expects of ``box_roi_pool``: (features, proposals, image_shapes) → [K, C, S, S]."""

    def __init__(self, featmap_name: str, output_size: int, stride: int) -> None:
        super().__init__()
        self.featmap_name, self.output_size, self.spatial_scale = featmap_name, (output_size, output_size), 1.0 / stride

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor], image_shapes) -> torch.Tensor:
        x = features[self.featmap_name]
        boxes = [p.to(x.dtype) for p in proposals]
        return roi_pool(x, boxes, self.output_size, self.spatial_scale)


def build_torchvision(name: str, num_classes: int = len(COCO_CLASS_NAMES)) -> FasterRCNN:
    """One of torchvision's COCO Faster R-CNN builders, randomly initialised (no download)."""
    if name not in TORCHVISION_MODELS:
        raise ValueError(f"{name!r} is not one of torchvision's builders: {', '.join(TORCHVISION_MODELS)}")
    return getattr(detection, name)(weights=None, weights_backbone=None, num_classes=num_classes)

