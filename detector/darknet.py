"""Darknet YOLOv3-tiny in torch: a ``.cfg`` parser, a ``.weights`` reader, and the frozen COCO trunk
registered (by ``detector.backbones``) as the ``yolov3_tiny`` backbone of the ``paper`` Faster R-CNN.

The trunk's convolutions were trained on COCO detection by the YOLOv3-tiny authors; here they are a
frozen shared feature extractor (as the paper's steps 3–4 freeze the shared convolutions), and only
the 1×1 reductions, the RPN and the RoI head are trained.

Conventions (Darknet's, reproduced exactly and checked against ``cv2.dnn`` in the tests):

* input: RGB in [0, 1], ``Tensor[B, 3, H, W]``, no mean/std;
* ``[convolutional]``: conv (padding ``size // 2`` when ``pad=1``) + batch norm + LeakyReLU(0.1);
  the batch norm is folded into the conv's weight and bias when the weights are read;
* ``[maxpool] size=2 stride=1`` pads one column/row on the right/bottom that keeps the edge value
  (zero padding changes the final output by up to 3.3); stride-2 pools use ceil mode (Darknet's
  output size for odd inputs);
* ``[upsample]``: nearest neighbour; ``[route]``: concatenation along channels.

The ``.weights`` file: int32 major, minor, revision, then ``seen`` (int64 when major·10+minor ≥ 2,
else int32); then, per convolutional layer in cfg order, float32 BN bias, BN scale, running mean,
running var (or the conv bias without BN), then the conv weights ``[out, in, k, k]``.

A shipped checkpoint holds the trunk's (folded) weights in its state dict, so no Darknet file is
needed at run time: the architecture is the embedded ``YOLOV3_TINY_CFG`` below.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

# Darknet's BN: (x - mean) / sqrt(var + eps). cv2.dnn's Darknet importer uses eps = 1e-6 (measured: 1e-5
# instead gives 8.7e-3 max abs difference on the first layer, 1e-6 gives 1e-4).
BN_EPS = 1e-6

# The YOLOv3-tiny network (pjreddie/darknet cfg/yolov3-tiny.cfg) without its training options, with
# the original masks (the second [yolo] layer: 1,2,3). The trunk needs only the layer structure.
YOLOV3_TINY_CFG = """
[net]
width=416
height=416
channels=3
[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
batch_normalize=1
filters=64
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
batch_normalize=1
filters=128
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
batch_normalize=1
filters=256
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
batch_normalize=1
filters=512
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=1
[convolutional]
batch_normalize=1
filters=1024
size=3
stride=1
pad=1
activation=leaky
[convolutional]
batch_normalize=1
filters=256
size=1
stride=1
pad=1
activation=leaky
[convolutional]
batch_normalize=1
filters=512
size=3
stride=1
pad=1
activation=leaky
[convolutional]
size=1
stride=1
pad=1
filters=255
activation=linear
[yolo]
mask = 3,4,5
anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319
classes=80
num=6
[route]
layers = -4
[convolutional]
batch_normalize=1
filters=128
size=1
stride=1
pad=1
activation=leaky
[upsample]
stride=2
[route]
layers = -1, 8
[convolutional]
batch_normalize=1
filters=256
size=3
stride=1
pad=1
activation=leaky
[convolutional]
size=1
stride=1
pad=1
filters=255
activation=linear
[yolo]
mask = 1,2,3
anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319
classes=80
num=6
"""

# The layers whose outputs feed the two YOLO heads: the last 3×3 convs before the 255-channel output
# convs. Layer 21 (stride 16, 256 ch) mixes the upsampled stride-32 context with layer 8; layer 14 is
# the stride-32 map (512 ch).
YOLOV3_TINY_FEATURE_LAYERS: tuple[int, ...] = (21, 14)
YOLOV3_TINY_FEATURE_STRIDES: tuple[int, ...] = (16, 32)


class DarknetError(ValueError):
    """A Darknet cfg or weights file does not match what the parser expects; names the file and value."""


@dataclass
class Section:
    """One ``[type]`` block of a Darknet cfg, with its options as strings."""

    kind: str
    options: dict[str, str] = field(default_factory=dict)
    line: int = 0

    def int(self, key: str, default: int | None = None) -> int:
        if key not in self.options:
            if default is None:
                raise DarknetError(f"[{self.kind}] at line {self.line} has no {key!r}")
            return default
        return int(self.options[key])

    def ints(self, key: str) -> list[int]:
        return [int(v) for v in self.options[key].split(",") if v.strip()]


def parse_cfg(text: str) -> list[Section]:
    """Parse Darknet cfg text into sections (``[net]`` first); comments and blank lines are skipped."""
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise DarknetError(f"cfg line {number}: {raw!r} opens a section but does not close it with ']'")
            sections.append(Section(line[1:-1].strip(), {}, number))
        elif "=" in line:
            if not sections:
                raise DarknetError(f"cfg line {number}: {raw!r} comes before any [section]")
            key, value = line.split("=", 1)
            sections[-1].options[key.strip()] = value.strip()
        else:
            raise DarknetError(f"cfg line {number}: {raw!r} is neither a [section] nor key=value")
    if not sections or sections[0].kind not in ("net", "network"):
        first = sections[0].kind if sections else "nothing"
        raise DarknetError(f"a Darknet cfg starts with [net]; this one starts with {first!r}")
    return sections


def patch_yolov3_tiny_cfg(text: str) -> str:
    """Fix the packaged ``yolov3-tiny.cfg`` bug: its second ``[yolo]`` says ``mask = 0,1,2`` but the
    weights were trained with ``mask = 1,2,3`` (with 0,1,2 every stride-16 box comes out about half its
    height). Other cfgs pass through unchanged."""
    yolo_starts = [m.start() for m in re.finditer(r"^\s*\[yolo\]", text, flags=re.MULTILINE)]
    if len(yolo_starts) != 2:
        return text
    head, tail = text[: yolo_starts[1]], text[yolo_starts[1]:]
    tail = re.sub(r"^(\s*mask\s*=\s*)0\s*,\s*1\s*,\s*2\s*$", r"\g<1>1,2,3", tail, count=1, flags=re.MULTILINE)
    return head + tail


class MaxPoolKeepEdge(nn.Module):
    """Darknet's ``[maxpool]``: the window starts at the pixel; the padding on the right/bottom
    (``size - 1``) never wins the max (it repeats the edge value). Stride-2 size-2 pools on odd
    inputs round the output size up, as Darknet does."""

    def __init__(self, size: int, stride: int) -> None:
        super().__init__()
        self.size, self.stride = size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            pad = self.size - 1
            x = F.pad(x, (0, pad, 0, pad), mode="replicate")
            return F.max_pool2d(x, self.size, 1)
        return F.max_pool2d(x, self.size, self.stride, ceil_mode=True)


class Upsample(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.stride, mode="nearest")


@dataclass
class _LayerInfo:
    kind: str
    out_channels: int
    stride: int
    sources: tuple[int, ...] = ()  # absolute layer indices for route layers
    conv_params: int = 0  # float32 values this conv reads from the .weights file
    batch_norm: bool = False


def _layer_infos(sections: Sequence[Section]) -> list[_LayerInfo]:
    """Channels, stride and weight counts of every layer (index = Darknet layer index)."""
    net = sections[0]
    channels, stride = net.int("channels", 3), 1
    infos: list[_LayerInfo] = []
    for index, sec in enumerate(sections[1:]):
        if sec.kind == "convolutional":
            filters, size = sec.int("filters"), sec.int("size")
            conv_stride = sec.int("stride", 1)
            bn = bool(sec.int("batch_normalize", 0))
            count = (4 * filters if bn else filters) + filters * channels * size * size
            info = _LayerInfo("convolutional", filters, stride * conv_stride, (), count, bn)
        elif sec.kind == "maxpool":
            info = _LayerInfo("maxpool", channels, stride * sec.int("stride", 1))
        elif sec.kind == "upsample":
            info = _LayerInfo("upsample", channels, stride // sec.int("stride", 2))
        elif sec.kind == "route":
            sources = tuple(i if i >= 0 else index + i for i in sec.ints("layers"))
            if any(not 0 <= s < index for s in sources):
                raise DarknetError(f"[route] at line {sec.line} refers to layers {sec.options['layers']} outside 0..{index - 1}")
            info = _LayerInfo("route", sum(infos[s].out_channels for s in sources), infos[sources[0]].stride, sources)
        elif sec.kind == "yolo":
            info = _LayerInfo("yolo", channels, stride)
        else:
            raise DarknetError(f"layer {index} [{sec.kind}] at line {sec.line} is not supported (YOLOv3-tiny layers only)")
        infos.append(info)
        channels, stride = info.out_channels, info.stride
    return infos


def check_input(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``x`` if it is ``Tensor[B, channels, H, W]``, else ``ValueError`` quoting its shape.

    A module-level function wrapped by ``torch.fx.wrap``: torch.fx records the call instead of
    tracing into its ``if`` on the shape, so the trunk stays traceable (int8 quantization,
    ``detector.quantize``) and the check still runs on every call of the traced graph."""
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"the Darknet trunk expects Tensor[B, 3, H, W] RGB in [0, 1]; got shape {tuple(x.shape)}")
    return x


torch.fx.wrap("check_input")


class DarknetTrunk(nn.Module):
    """The layers of a Darknet cfg needed to compute ``outputs`` (Darknet layer indices).

    ``forward(x: Tensor[B, 3, H, W] RGB in [0, 1]) -> list[Tensor]``, one map per requested output,
    in the order of ``outputs``. Layers that no output depends on (the YOLO output convs) are not built.
    Convolutions carry the folded batch norm as their bias.
    """

    def __init__(self, cfg_text: str, outputs: Sequence[int]) -> None:
        super().__init__()
        self.sections = parse_cfg(cfg_text)
        self.infos = _layer_infos(self.sections)
        self.outputs = tuple(int(o) for o in outputs)
        for o in self.outputs:
            if not 0 <= o < len(self.infos) or self.infos[o].kind == "yolo":
                raise DarknetError(f"output layer {o} is not a feature layer of this cfg ({len(self.infos)} layers)")
        self.needed = self._needed_layers(self.outputs)
        self.last = max(self.outputs)
        self.layers = nn.ModuleDict()
        in_channels = self.sections[0].int("channels", 3)
        for index, (sec, info) in enumerate(zip(self.sections[1:], self.infos, strict=True)):
            if index in self.needed:
                self.layers[str(index)] = self._make_layer(sec, info, in_channels)
            in_channels = info.out_channels

    def _needed_layers(self, outputs: Sequence[int]) -> set[int]:
        needed: set[int] = set()
        stack = list(outputs)
        while stack:
            i = stack.pop()
            if i in needed:
                continue
            needed.add(i)
            info = self.infos[i]
            if info.kind == "route":
                stack.extend(info.sources)
            elif i > 0:
                stack.append(i - 1)
        return needed

    @staticmethod
    def _make_layer(sec: Section, info: _LayerInfo, in_channels: int) -> nn.Module:
        if sec.kind == "convolutional":
            size = sec.int("size")
            padding = size // 2 if sec.int("pad", 0) else sec.int("padding", 0)
            conv = nn.Conv2d(in_channels, info.out_channels, size, sec.int("stride", 1), padding, bias=True)
            activation = sec.options.get("activation", "linear")
            if activation == "leaky":
                return nn.Sequential(conv, nn.LeakyReLU(0.1, inplace=True))
            if activation == "linear":
                return nn.Sequential(conv)
            raise DarknetError(f"[convolutional] at line {sec.line}: activation {activation!r} is not supported (leaky, linear)")
        if sec.kind == "maxpool":
            return MaxPoolKeepEdge(sec.int("size"), sec.int("stride", 1))
        if sec.kind == "upsample":
            return Upsample(sec.int("stride", 2))
        return nn.Identity()  # route: handled in forward

    def forward_all(self, x: torch.Tensor, last: int | None = None) -> dict[int, torch.Tensor]:
        """Every built layer's output up to the last requested one (or ``last``), keyed by Darknet layer index."""
        x = check_input(x, self.sections[0].int("channels", 3))
        return self._run({}, 0, self.last if last is None else last, x)

    def _run(self, cache: dict[int, torch.Tensor], first: int, last: int, previous: torch.Tensor | None):
        """Layers ``first``..``last`` into ``cache`` (routes read it; ``previous``: layer first-1's output)."""
        for index in range(first, last + 1):
            if index not in self.needed:
                continue
            info = self.infos[index]
            if info.kind == "route":
                parts = [cache[s] for s in info.sources]
                out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            else:
                out = self.layers[str(index)](previous)
            cache[index] = out
            previous = out
        return cache

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        cache = self.forward_all(x)
        return [cache[o] for o in self.outputs]

    def boundary(self, first: int) -> tuple[int, ...]:
        """The layers before ``first`` whose outputs the layers from ``first`` on read (in index order):
        what ``forward_until(first)`` returns and ``forward_from(first, …)`` takes."""
        if not 0 < first <= self.last or first not in self.needed:
            raise DarknetError(f"layer {first} does not split this trunk (built layers 1..{self.last}: "
                               f"{', '.join(str(i) for i in sorted(self.needed) if i > 0)})")
        read = set()
        for i in sorted(self.needed):
            if i >= first:
                info = self.infos[i]
                read.update(info.sources if info.kind == "route" else (i - 1,))
        return tuple(sorted(i for i in read if i < first))

    def forward_until(self, x: torch.Tensor, first: int) -> list[torch.Tensor]:
        """The outputs of ``boundary(first)``: the trunk run up to layer ``first`` (excluded)."""
        keep = self.boundary(first)
        cache = self.forward_all(x, last=max(keep))
        return [cache[i] for i in keep]

    def forward_from(self, first: int, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The requested outputs, from ``forward_until(x, first)``'s maps: layers ``first`` on."""
        cache = dict(zip(self.boundary(first), maps, strict=True))
        self._run(cache, first, self.last, cache.get(first - 1))
        return [cache[o] for o in self.outputs]


def read_darknet_weights(path: str | Path, trunk: DarknetTrunk) -> dict:
    """Load a Darknet ``.weights`` file into ``trunk`` (folding each batch norm into its conv).

    Every conv layer of the cfg is read in order, also those the trunk does not build (their values
    are skipped). Returns the header: {"major", "minor", "revision", "seen"}.
    """
    path = Path(path)
    if not path.is_file():
        raise DarknetError(f"Darknet weights file {path} does not exist")
    raw = path.read_bytes()
    major, minor, revision = (int(v) for v in np.frombuffer(raw, dtype=np.int32, count=3))
    if major * 10 + minor >= 2:
        seen, offset = int(np.frombuffer(raw, dtype=np.int64, count=1, offset=12)[0]), 20
    else:
        seen, offset = int(np.frombuffer(raw, dtype=np.int32, count=1, offset=12)[0]), 16
    values = np.frombuffer(raw, dtype=np.float32, offset=offset)
    expected = sum(info.conv_params for info in trunk.infos)
    if values.size != expected:
        raise DarknetError(
            f"{path.name} holds {values.size} float32 values after its header (v{major}.{minor}.{revision}); "
            f"the cfg's {sum(i.kind == 'convolutional' for i in trunk.infos)} conv layers need {expected}"
        )
    position = 0
    for index, info in enumerate(trunk.infos):
        if info.kind != "convolutional":
            continue
        chunk = values[position: position + info.conv_params]
        position += info.conv_params
        if index not in trunk.needed:
            continue
        conv: nn.Conv2d = trunk.layers[str(index)][0]
        n = info.out_channels
        if info.batch_norm:
            bias, scale, mean, var = (torch.from_numpy(chunk[i * n:(i + 1) * n].copy()) for i in range(4))
            weight = torch.from_numpy(chunk[4 * n:].copy()).view_as(conv.weight)
            factor = scale / torch.sqrt(var + BN_EPS)
            folded_w = weight * factor.view(-1, 1, 1, 1)
            folded_b = bias - mean * factor
        else:
            folded_b = torch.from_numpy(chunk[:n].copy())
            folded_w = torch.from_numpy(chunk[n:].copy()).view_as(conv.weight)
        with torch.no_grad():
            conv.weight.copy_(folded_w)
            conv.bias.copy_(folded_b)
    return {"major": major, "minor": minor, "revision": revision, "seen": seen}


class YoloTinyBackbone(nn.Module):
    """The frozen YOLOv3-tiny trunk as a two-level backbone (strides 16 and 32).

    ``forward(x: Tensor[B, 3, H, W] RGB in [0, 1]) -> OrderedDict{"0": Tensor[B, C, H/16, W/16],
    "1": Tensor[B, C, H/32, W/32]}`` with C = ``out_channels`` = ``reduce_channels``: each level gets its
    own trainable 1×1 conv + ReLU to a common width, so that one RPN head serves both levels.

    ``trunk_features`` / ``neck`` split the forward at the frozen/trainable boundary so that training
    can cache the trunk's maps. ``train_from``: None freezes the whole trunk; a Darknet layer index
    trains the trunk's layers from it on with the neck (13: the YOLO head's own layers 13–21, which mix
    the two levels), and ``trunk_features`` then returns the maps those layers read.
    """

    def __init__(self, reduce_channels: int = 256, cfg_text: str = YOLOV3_TINY_CFG, train_from: int | None = None) -> None:
        super().__init__()
        self.trunk = DarknetTrunk(cfg_text, YOLOV3_TINY_FEATURE_LAYERS)
        self.train_from = None if train_from is None else int(train_from)
        if self.train_from is not None:
            self.trunk.boundary(self.train_from)  # raises for a layer that does not split the trunk
        for name, p in self.trunk.named_parameters():
            p.requires_grad_(self.train_from is not None and int(name.split(".")[1]) >= self.train_from)
        widths = [self.trunk.infos[i].out_channels for i in YOLOV3_TINY_FEATURE_LAYERS]
        self.reduce = nn.ModuleList(
            nn.Sequential(nn.Conv2d(w, reduce_channels, 1), nn.ReLU(inplace=True)) for w in widths
        )
        self.out_channels = reduce_channels
        self.strides = YOLOV3_TINY_FEATURE_STRIDES
        self.image_mean = [0.0, 0.0, 0.0]
        self.image_std = [1.0, 1.0, 1.0]
        self.frozen_trunk = True

    def train(self, mode: bool = True) -> YoloTinyBackbone:
        super().train(mode)
        self.trunk.eval()  # frozen: always in inference mode
        return self

    def trunk_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The frozen maps (no gradient): [Tensor[B, 256, H/16, W/16], Tensor[B, 512, H/32, W/32]], or
        with ``train_from`` the maps its layers read (13: layer 8's, stride 16, and layer 12's, stride 32)."""
        with torch.no_grad():
            return self.trunk(x) if self.train_from is None else self.trunk.forward_until(x, self.train_from)

    def neck(self, maps: Sequence[torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        """The trainable part on the frozen maps — the trunk's layers from ``train_from`` on, if any,
        then the 1×1 reductions; keys "0" (stride 16) and "1" (stride 32)."""
        if self.train_from is not None:
            maps = self.trunk.forward_from(self.train_from, maps)
        return OrderedDict((str(i), red(m)) for i, (red, m) in enumerate(zip(self.reduce, maps, strict=True)))

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.neck(self.trunk_features(x))


def yolov3_tiny(reduce_channels: int | None = 256, darknet_weights: str | None = None,
                darknet_cfg: str | None = None, train_from: int | None = None) -> nn.Module:
    """YOLOv3-tiny's COCO-trained trunk, frozen, at strides 16 and 32 (see ``YoloTinyBackbone``).

    Args:
        reduce_channels: common width of the two levels (required: the levels are 256 and 512 wide).
        darknet_weights: a Darknet ``yolov3-tiny.weights`` to initialise the trunk from. None leaves it
            random — a checkpoint's state dict then supplies the trunk (no Darknet file at run time).
        darknet_cfg: a Darknet cfg file instead of the embedded one (patched if it is the buggy one).
        train_from: train the trunk's layers from this Darknet index on (None: all frozen).
    """
    if reduce_channels is None:
        raise ValueError("backbone 'yolov3_tiny' needs reduce_channels (an int): its levels are 256 and 512 wide")
    cfg_text = YOLOV3_TINY_CFG if darknet_cfg is None else patch_yolov3_tiny_cfg(Path(darknet_cfg).read_text())
    body = YoloTinyBackbone(int(reduce_channels), cfg_text, train_from=train_from)
    if darknet_weights is not None:
        read_darknet_weights(darknet_weights, body.trunk)
    return body
