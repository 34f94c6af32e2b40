"""Pluggable backbones for the ``paper`` Faster R-CNN: a small registry of feature extractors.

Every backbone is an ``nn.Module`` that maps a normalised image batch ``Tensor[B, 3, H, W]`` to an
``OrderedDict[str, Tensor[B, C, H/s, W/s]]`` (one entry per feature level, finest first) and carries:

* ``out_channels``: C, the same for every level (a 1×1 conv brings wide maps down to 256),
* ``strides``: the stride s of every level,
* ``image_mean`` / ``image_std``: the normalisation its weights expect, applied by the model's
  transform (so that resizing and normalising happen on the device).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn
from torchvision import models
from torchvision.ops import FrozenBatchNorm2d

from detector import darknet, nanodet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BackboneFactory = Callable[..., nn.Module]
BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    def wrap(factory: BackboneFactory) -> BackboneFactory:
        BACKBONES[name] = factory
        return factory

    return wrap


def build_backbone(name: str, reduce_channels: int | None = 256, **kwargs) -> nn.Module:
    """Build a registered backbone; ``reduce_channels`` sets the width of the 1×1 reduction
    applied to maps wider than it (None keeps the native width)."""
    if name not in BACKBONES:
        raise ValueError(f"backbone {name!r} is unknown; expected one of {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](reduce_channels=reduce_channels, **kwargs)


def available_backbones() -> list[str]:
    """The names ``build_backbone`` accepts."""
    return sorted(BACKBONES)


class SingleLevel(nn.Module):
    """Wraps a trunk that returns one tensor, optionally reducing its channels with a 1×1 conv."""

    def __init__(self, trunk: nn.Module, channels: int, stride: int, reduce_channels: int | None,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        super().__init__()
        self.body = trunk
        if reduce_channels is not None and channels > reduce_channels:
            self.reduce = nn.Sequential(nn.Conv2d(channels, reduce_channels, 1), nn.ReLU(inplace=True))
            channels = reduce_channels
        else:
            self.reduce = nn.Identity()
        self.out_channels = channels
        self.strides = (stride,)
        self.image_mean = list(mean)
        self.image_std = list(std)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return OrderedDict([("0", self.reduce(self.body(x)))])


def _frozen_bn(module: nn.Module) -> nn.Module:
    """Replace BatchNorm2d by FrozenBatchNorm2d: detection batches are too small to train BN."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            _frozen_bn(child)
    return module


@register_backbone("mobilenet_v2")
def mobilenet_v2(reduce_channels: int | None = 256, imagenet_weights: str | None = None) -> nn.Module:
    """MobileNetV2 cut after its last stride-16 block (96 channels), as the paper's shared conv map.

    ``imagenet_weights``: a state dict file for ``torchvision.models.mobilenet_v2().features``.
    """
    features = models.mobilenet_v2(weights=None).features
    if imagenet_weights:
        state = torch.load(imagenet_weights, map_location="cpu", weights_only=True)
        features.load_state_dict(state)
    return SingleLevel(_frozen_bn(features[:14]), 96, 16, reduce_channels)


def _resnet_c4(arch: str, channels: int, reduce_channels: int | None) -> nn.Module:
    net = getattr(models, arch)(weights=None, norm_layer=FrozenBatchNorm2d)
    trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
    return SingleLevel(trunk, channels, 16, reduce_channels)


@register_backbone("resnet18")
def resnet18(reduce_channels: int | None = 256) -> nn.Module:
    """ResNet-18 up to conv4 (stride 16, 256 channels)."""
    return _resnet_c4("resnet18", 256, reduce_channels)


@register_backbone("resnet50")
def resnet50(reduce_channels: int | None = 256) -> nn.Module:
    """ResNet-50 up to conv4 (stride 16, 1024 channels → 256), the paper's ResNet setting."""
    return _resnet_c4("resnet50", 1024, reduce_channels)


# Backbones defined in their own modules. They do not import this one (no import circle): the
# registry lives here and registers them.
register_backbone("yolov3_tiny")(darknet.yolov3_tiny)
register_backbone("nanodet")(nanodet.nanodet)
