"""NanoDet-g in torch: the COCO-trained network inside the human library's ``nanodet.json``, written
out as modules, its weights read from the TF.js file, and its trunk registered (by
``detector.backbones``) as the ``nanodet`` backbone of the ``paper`` Faster R-CNN.

What the graph really is (read from its topology, not from its file name): not NanoDet-m's
ShuffleNetV2 but **NanoDet-g** (RangiLyu/nanodet ``config/legacy_v0.x_configs/nanodet-g.yml``,
Apache-2.0): a ``CustomCspNet`` backbone (3×3 conv stem, 3×3 max pool, four CSP blocks of tiny
residual blocks, LeakyReLU 0.1), a PAN (1×1 lateral convs to 128, bilinear top-down and bottom-up
additions, no activation) and a head of one 3×3 conv + LeakyReLU per level and a 1×1 conv to 80
class logits + 4 × 11 GFL distance bins (``reg_max`` 10). Strides 8, 16, 32. The graph came through
ONNX (onnx-tf), so the batch norms are already folded into the convs' biases.

Input convention (upstream's, ``nanodet/data/transform``): BGR, ``(pixel - mean) / std`` with
mean (103.53, 116.28, 123.675) and std (57.375, 57.12, 58.395), letterboxed (aspect kept, centred)
into a 416×416 square. Here the stem's input channels are swapped once when the weights are read,
so the modules take **RGB**: ``(rgb·255 - (123.675, 116.28, 103.53)) / (58.395, 57.12, 57.375)``.
(The human library feeds RGB / 255 without mean or std; on real frames that finds fewer objects.)

Box decoding (upstream ``GFLHead.get_bboxes_single``, v0.4.2): centre of cell (x, y) at
((x + 0.5)·s, (y + 0.5)·s); each side's distance = Σ softmax(bins)·[0..10] × s; box =
(cx - l, cy - t, cx + r, cy + b) clipped to the input; class scores = sigmoid(logits).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# RGB order (the stem's channels are swapped from upstream's BGR when the weights are read)
NANODET_MEAN_RGB = (123.675, 116.28, 103.53)
NANODET_STD_RGB = (58.395, 57.12, 57.375)
NANODET_STRIDES = (8, 16, 32)
NANODET_REG_MAX = 10
NANODET_NUM_CLASSES = 80
NANODET_WIDTH = 128  # PAN / head width
# (channels, tiny residual blocks, stride) of the four CSP blocks; each returns 2 × channels
CSP_BLOCKS = ((32, 1, 1), (64, 2, 2), (128, 2, 2), (256, 3, 2))
LEAKY = 0.1


class ConvAct(nn.Sequential):
    """Conv (padding k//2, with the folded BN as bias) + LeakyReLU(0.1)."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2), nn.LeakyReLU(LEAKY, inplace=True))


class TinyResBlock(nn.Module):
    """c → c/2 (in_conv) → c/2 (mid_conv); returns cat(mid, in): c channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.in_conv = ConvAct(channels, channels // 2)
        self.mid_conv = ConvAct(channels // 2, channels // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_conv(x)
        return torch.cat((self.mid_conv(x), x), 1)


class CspBlock(nn.Module):
    """in_conv (stride s) → tiny residual blocks → res_out_conv; returns cat(out, in): 2c channels."""

    def __init__(self, channels: int, blocks: int, stride: int) -> None:
        super().__init__()
        self.in_conv = ConvAct(channels, channels, 3, stride)
        self.res_blocks = nn.Sequential(*(TinyResBlock(channels) for _ in range(blocks)))
        self.res_out_conv = ConvAct(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_conv(x)
        return torch.cat((self.res_out_conv(self.res_blocks(x)), x), 1)


class NanoDetTrunk(nn.Module):
    """CustomCspNet + PAN of NanoDet-g.

    ``forward(x: Tensor[B, 3, H, W] normalised RGB) -> [Tensor[B, 128, H/8, W/8], Tensor[B, 128, H/16,
    W/16], Tensor[B, 128, H/32, W/32]]``: the PAN outputs, which feed NanoDet's head. H and W
    should be multiples of 32 (the Faster R-CNN transform pads to that).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvAct(3, 32, 3, 2)
        self.csp = nn.ModuleList(CspBlock(c, n, s) for c, n, s in CSP_BLOCKS)
        self.laterals = nn.ModuleList(nn.Conv2d(2 * c, NANODET_WIDTH, 1) for c, _, _ in CSP_BLOCKS[1:])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.max_pool2d(self.stem(x), 3, 2, 1)
        levels = []
        for i, block in enumerate(self.csp):
            x = block(x)
            if i >= 1:
                levels.append(x)
        lat = [conv(f) for conv, f in zip(self.laterals, levels, strict=True)]
        for i in range(len(lat) - 1, 0, -1):  # top-down
            lat[i - 1] = lat[i - 1] + _bilinear(lat[i], lat[i - 1].shape[-2:])
        for i in range(len(lat) - 1):  # bottom-up
            lat[i + 1] = lat[i + 1] + _bilinear(lat[i], lat[i + 1].shape[-2:])
        return lat


def _bilinear(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Upstream's ``F.interpolate(scale_factor=2 or 0.5, mode="bilinear")`` (half-pixel centres)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class NanoDetHead(nn.Module):
    """Per level: 3×3 conv 128 + LeakyReLU, then a 1×1 conv to 80 class logits + 44 distance bins.

    ``forward(maps) -> [Tensor[B, 124, h_l, w_l]]`` per level (raw: no sigmoid, no softmax)."""

    def __init__(self) -> None:
        super().__init__()
        outputs = NANODET_NUM_CLASSES + 4 * (NANODET_REG_MAX + 1)
        self.convs = nn.ModuleList(ConvAct(NANODET_WIDTH, NANODET_WIDTH) for _ in NANODET_STRIDES)
        self.outputs = nn.ModuleList(nn.Conv2d(NANODET_WIDTH, outputs, 1) for _ in NANODET_STRIDES)

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [out(conv(m)) for conv, out, m in zip(self.convs, self.outputs, maps, strict=True)]


class NanoDet(nn.Module):
    """The whole NanoDet-g network: ``forward(x) -> [Tensor[B, 124, H/s, W/s]]`` for s = 8, 16, 32."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = NanoDetTrunk()
        self.head = NanoDetHead()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.head(self.trunk(x))


def _convs(model: NanoDet) -> list[nn.Conv2d]:
    """The 34 convolutions in the order the graph numbers them (``PartitionedCall/convolution_N``)."""
    t, h = model.trunk, model.head
    order: list[nn.Conv2d] = [t.stem[0]]
    for block in t.csp:
        order.append(block.in_conv[0])
        for res in block.res_blocks:
            order += [res.in_conv[0], res.mid_conv[0]]
        order.append(block.res_out_conv[0])
    order += list(t.laterals)
    for conv, out in zip(h.convs, h.outputs, strict=True):
        order += [conv[0], out]
    return order


def load_tfjs_weights(model: NanoDet, graph_or_path) -> NanoDet:
    """Copy the weights of the human library's ``nanodet.json`` (a path or a loaded
    ``detector.tfjs.GraphModel``) into ``model``; the stem's input channels go from BGR to RGB.

    Each ``PartitionedCall/convolution_N`` (filter [kh, kw, in, out]) is followed by an ``Add`` of
    its folded bias; both are matched by the graph's own edges, and every shape is checked."""
    from detector.tfjs import GraphModel, TfjsError

    graph = GraphModel.load(graph_or_path) if isinstance(graph_or_path, (str, Path)) else graph_or_path
    convs = {n.name: n for n in graph.nodes.values() if n.op == "Conv2D"}
    bias_of = {}
    for n in graph.nodes.values():
        if n.op == "Add" and n.inputs[0] in convs and graph.nodes[n.inputs[1]].op == "Const":
            bias_of[n.inputs[0]] = graph.weights[n.inputs[1]]
    targets = _convs(model)
    if len(convs) != len(targets):
        raise TfjsError(f"the graph has {len(convs)} Conv2D nodes; NanoDet-g has {len(targets)}: "
                        f"is {graph.meta.get('generatedBy')} NanoDet-g?")
    for i, conv in enumerate(targets):
        name = "PartitionedCall/convolution" + (f"_{i}" if i else "")
        if name not in convs or name not in bias_of:
            raise TfjsError(f"the graph has no {name} with a bias Add; is it NanoDet-g?")
        weight = graph.weights[convs[name].inputs[1]].permute(3, 2, 0, 1)
        if i == 0:
            weight = weight.flip(1)  # BGR → RGB input channels
        if tuple(weight.shape) != tuple(conv.weight.shape) or bias_of[name].shape != conv.bias.shape:
            raise TfjsError(f"{name}: filter {tuple(weight.shape)} / bias {tuple(bias_of[name].shape)} do not fit "
                            f"NanoDet-g's conv {tuple(conv.weight.shape)}")
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(bias_of[name])
    return model


def normalise(rgb01: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1], ``Tensor[B, 3, H, W]`` → NanoDet's normalised input (RGB order)."""
    mean = torch.tensor(NANODET_MEAN_RGB, dtype=rgb01.dtype, device=rgb01.device).view(1, 3, 1, 1) / 255
    std = torch.tensor(NANODET_STD_RGB, dtype=rgb01.dtype, device=rgb01.device).view(1, 3, 1, 1) / 255
    return (rgb01 - mean) / std


def decode(outputs: Sequence[torch.Tensor], input_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream's GFL decoding of one image.

    Args:
        outputs: the head's raw output per level, ``Tensor[124, h, w]`` (80 class logits, then 4 × 11
            distance bins), in stride order 8, 16, 32.
        input_size: (height, width) of the network input; boxes are clipped to it.
    Returns:
        boxes ``Tensor[N, 4]`` (x1, y1, x2, y2) in input pixels and scores ``Tensor[N, 80]`` in [0, 1],
        one row per cell (N = Σ h·w over the levels).
    """
    boxes, scores = [], []
    bins = torch.arange(NANODET_REG_MAX + 1, dtype=torch.float32)
    for stride, out in zip(NANODET_STRIDES, outputs, strict=True):
        c, h, w = out.shape
        rows = out.reshape(c, h * w).t()
        cls, reg = rows[:, :NANODET_NUM_CLASSES].sigmoid(), rows[:, NANODET_NUM_CLASSES:]
        b, s = _decode_level(cls, reg, h, w, stride, input_size, bins)
        boxes.append(b)
        scores.append(s)
    return torch.cat(boxes), torch.cat(scores)


def _decode_level(cls: torch.Tensor, reg: torch.Tensor, h: int, w: int, stride: int, input_size: tuple[int, int],
                  bins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    cx, cy = (xs.reshape(-1) + 0.5) * stride, (ys.reshape(-1) + 0.5) * stride
    dist = torch.softmax(reg.reshape(-1, 4, NANODET_REG_MAX + 1), -1) @ bins * stride  # [h·w, 4]: l, t, r, b
    boxes = torch.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1)
    height, width = input_size
    boxes = torch.stack([boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
                         boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)], 1)
    return boxes, cls


def decode_graph_outputs(outputs: dict[str, torch.Tensor], input_size: tuple[int, int] = (416, 416)
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same decoding for the TF.js graph's six outputs: per level ``[1, h·w, 80]`` sigmoid scores
    and ``[1, h·w, 44]`` bins, told apart by their widths and ordered by their lengths."""
    scores = sorted((v[0] for v in outputs.values() if v.shape[-1] == NANODET_NUM_CLASSES), key=len, reverse=True)
    regs = sorted((v[0] for v in outputs.values() if v.shape[-1] != NANODET_NUM_CLASSES), key=len, reverse=True)
    bins = torch.arange(NANODET_REG_MAX + 1, dtype=torch.float32)
    boxes, all_scores = [], []
    for stride, cls, reg in zip(NANODET_STRIDES, scores, regs, strict=True):
        h, w = input_size[0] // stride, input_size[1] // stride
        b, s = _decode_level(cls, reg, h, w, stride, input_size, bins)
        boxes.append(b)
        all_scores.append(s)
    return torch.cat(boxes), torch.cat(all_scores)


NECKS = ("reduce", "head")


class NanoDetBackbone(nn.Module):
    """The frozen NanoDet-g trunk (CSP backbone + PAN, COCO-trained) as a three-level backbone.

    ``forward(x: Tensor[B, 3, H, W] normalised RGB) -> OrderedDict{"0": [B, C, H/8, W/8], "1": [B, C,
    H/16, W/16], "2": [B, C, H/32, W/32]}``. ``trunk_features`` / ``neck`` split the forward at the
    frozen/trainable boundary so that training can cache the trunk's maps. The trainable neck is

    * ``"reduce"``: a 1×1 conv + ReLU per level to C = ``reduce_channels`` (the PAN's maps are linear sums);
    * ``"head"``: NanoDet's own head per level — its 3×3 conv + LeakyReLU (128 channels, the "tower")
      and its 1×1 conv to the 80 COCO class logits — giving C = 128 + 80 channels: the tower's features,
      then the class-logit maps (``prior_channels``). Initialised from the teacher and trained further,
      the logit maps let the RoI head start from NanoDet's own classification of each RoI
      (``detector.prior_head``) instead of from nothing.
    """

    def __init__(self, reduce_channels: int = NANODET_WIDTH, neck: str = "reduce") -> None:
        super().__init__()
        if neck not in NECKS:
            raise ValueError(f"nanodet neck {neck!r} is unknown; expected one of {', '.join(NECKS)}")
        self.trunk = NanoDetTrunk()
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        self.neck_kind = neck
        if neck == "reduce":
            self.reduce = nn.ModuleList(
                nn.Sequential(nn.Conv2d(NANODET_WIDTH, reduce_channels, 1), nn.ReLU(inplace=True)) for _ in NANODET_STRIDES
            )
            self.out_channels = reduce_channels
            self.prior_channels: tuple[int, int] | None = None
        else:
            self.towers = nn.ModuleList(ConvAct(NANODET_WIDTH, NANODET_WIDTH) for _ in NANODET_STRIDES)
            self.class_maps = nn.ModuleList(nn.Conv2d(NANODET_WIDTH, NANODET_NUM_CLASSES, 1) for _ in NANODET_STRIDES)
            self.out_channels = NANODET_WIDTH + NANODET_NUM_CLASSES
            self.prior_channels = (NANODET_WIDTH, NANODET_WIDTH + NANODET_NUM_CLASSES)
        self.strides = NANODET_STRIDES
        self.image_mean = [m / 255 for m in NANODET_MEAN_RGB]
        self.image_std = [s / 255 for s in NANODET_STD_RGB]
        self.frozen_trunk = True

    def train(self, mode: bool = True) -> NanoDetBackbone:
        super().train(mode)
        self.trunk.eval()
        return self

    def trunk_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The frozen PAN maps, three ``Tensor[B, 128, H/s, W/s]`` (no gradient)."""
        with torch.no_grad():
            return self.trunk(x)

    def neck(self, maps: Sequence[torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        if self.neck_kind == "reduce":
            return OrderedDict((str(i), red(m)) for i, (red, m) in enumerate(zip(self.reduce, maps, strict=True)))
        out = OrderedDict()
        for i, (tower, classes, m) in enumerate(zip(self.towers, self.class_maps, maps, strict=True)):
            t = tower(m)
            out[str(i)] = torch.cat((t, classes(t)), 1)
        return out

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.neck(self.trunk_features(x))


def nanodet(reduce_channels: int | None = NANODET_WIDTH, tfjs_model: str | None = None, neck: str = "reduce") -> nn.Module:
    """NanoDet-g's COCO-trained trunk, frozen, at strides 8, 16 and 32 (see ``NanoDetBackbone``).

    Args:
        reduce_channels: width of the trainable 1×1 convs of the "reduce" neck (None: the PAN's own 128).
        tfjs_model: the human library's ``nanodet.json`` to read the trunk (and, for the "head" neck, the
            head's towers and class convs) from. None leaves them random — a checkpoint's state dict then
            supplies them (no TF.js file at run time).
        neck: "reduce" or "head" (see ``NanoDetBackbone``).
    """
    body = NanoDetBackbone(int(reduce_channels or NANODET_WIDTH), neck)
    if tfjs_model is not None:
        full = load_tfjs_weights(NanoDet(), tfjs_model)
        body.trunk.load_state_dict(full.trunk.state_dict())
        if neck == "head":
            with torch.no_grad():
                for tower, classes, conv, out in zip(body.towers, body.class_maps, full.head.convs, full.head.outputs, strict=True):
                    tower.load_state_dict(conv.state_dict())
                    classes.weight.copy_(out.weight[:NANODET_NUM_CLASSES])
                    classes.bias.copy_(out.bias[:NANODET_NUM_CLASSES])
    return body
