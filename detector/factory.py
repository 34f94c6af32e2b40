"""Turn a ``DetectorConfig`` into a model with weights: the one place that decides where weights come from."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from detector.builders import (
    COCO_CLASS_NAMES,
    DEFAULT,
    PAPER,
    TORCHVISION_MODELS,
    build_paper,
    build_torchvision,
)
from detector.config import WEIGHTS_DEFAULT, WEIGHTS_RANDOM, WEIGHTS_TORCHVISION, DetectorConfig
from detector.weights import (
    CHECKPOINT_FORMAT,
    WeightsError,
    load_into,
    read_weights_file,
    split_checkpoint,
    torchvision_state_dict,
)

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL_PATH = ASSETS_DIR / "default_model.pt"


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded: shown to the user and written into benchmark results."""

    name: str  # builder name actually used ("paper", "fasterrcnn_resnet50_fpn", ...)
    source: str  # where the weights came from (a path, "torchvision", "random")
    trained: bool  # False: random weights, boxes mean nothing
    arch: dict
    meta: dict

    @property
    def warning(self) -> str | None:
        if self.trained:
            return None
        return f"model {self.name} runs with UNTRAINED random weights ({self.source}): its boxes mean nothing"


def create_model(config: DetectorConfig) -> tuple[nn.Module, tuple[str, ...], ModelInfo]:
    """Build the model named by ``config`` and load its weights.

    Returns (model in eval mode on the CPU, class names with index 0 = background, info).
    Raises ``WeightsError`` with a one-line message on any weights problem.
    """
    torch.manual_seed(config.seed)
    if config.weights == WEIGHTS_TORCHVISION:
        if config.model not in TORCHVISION_MODELS:
            raise WeightsError(
                f"weights 'torchvision' exist only for {', '.join(TORCHVISION_MODELS)}; model {config.model!r} has none"
            )
        model = build_torchvision(config.model)
        load_into(model, torchvision_state_dict(config.model), f"torchvision's {config.model} weights")
        return model.eval(), COCO_CLASS_NAMES, ModelInfo(config.model, "torchvision", True, {}, {})

    if config.weights == WEIGHTS_RANDOM:
        return _random(config, "random")

    if config.weights == WEIGHTS_DEFAULT:
        if config.model in TORCHVISION_MODELS:
            # The default weights of a torchvision builder are its COCO weights (cache or download).
            return create_model(config.with_(weights=WEIGHTS_TORCHVISION))
        if config.model == PAPER:
            return _random(config, "no weights given for 'paper'")
        if not DEFAULT_MODEL_PATH.exists():
            return _random(config, f"the bundled model {DEFAULT_MODEL_PATH} is missing (make model builds it)")
        path = DEFAULT_MODEL_PATH
    else:
        path = Path(config.weights)

    obj = read_weights_file(path)
    if obj.get("format") == CHECKPOINT_FORMAT:
        return _from_checkpoint(obj, str(path))
    state, _ = split_checkpoint(obj, str(path))
    if config.model in (DEFAULT, PAPER):
        raise WeightsError(
            f"{path} is a plain state dict; name its architecture with --model "
            f"({', '.join(TORCHVISION_MODELS)}) or pass a frcnn-video checkpoint"
        )
    num_classes = _num_classes(state, str(path))
    model = build_torchvision(config.model, num_classes=num_classes)
    load_into(model, state, str(path))
    names = COCO_CLASS_NAMES if num_classes == len(COCO_CLASS_NAMES) else tuple(
        ["__background__"] + [f"class_{i}" for i in range(1, num_classes)]
    )
    return model.eval(), names, ModelInfo(config.model, str(path), True, {}, {})


def _from_checkpoint(obj: dict, source: str) -> tuple[nn.Module, tuple[str, ...], ModelInfo]:
    state, _ = split_checkpoint(obj, source)
    for key, kind, expected in (("arch", dict, "a dict"), ("class_names", (list, tuple), "a list of names"),
                                ("meta", dict, "a dict")):
        if key not in obj:  # no arch, no meta: none; no class_names: refused below
            continue
        value = obj[key]
        if not isinstance(value, kind) or kind is not dict and not all(isinstance(n, str) for n in value):
            what = f"its {key!r} is a {type(value).__name__}, expected {expected}"
            raise WeightsError(f"{source} is a broken checkpoint: {what}")
    name, arch, names = obj.get("model"), dict(obj.get("arch", {})), tuple(obj.get("class_names", ()))
    if not names:
        raise WeightsError(f"{source} has no class_names")
    try:
        if name == PAPER:
            model = build_paper(num_classes=len(names), **arch)
        elif name in TORCHVISION_MODELS:
            model = build_torchvision(name, num_classes=len(names))
        else:
            raise WeightsError(f"{source} names model {name!r}, expected 'paper' or a torchvision builder")
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{source} has an architecture this version cannot build: {exc}") from None
    load_into(model, state, source)
    return model.eval(), names, ModelInfo(name, source, True, arch, dict(obj.get("meta", {})))


def _random(config: DetectorConfig, why: str) -> tuple[nn.Module, tuple[str, ...], ModelInfo]:
    if config.model in TORCHVISION_MODELS:
        model, name, arch = build_torchvision(config.model), config.model, {}
    else:
        arch = {"backbone": config.backbone}
        model, name = build_paper(num_classes=len(COCO_CLASS_NAMES), **arch), PAPER
    info = ModelInfo(name, why, False, arch, {})
    log.warning(info.warning)
    return model.eval(), COCO_CLASS_NAMES, info


def _num_classes(state: dict[str, torch.Tensor], source: str) -> int:
    key = "roi_heads.box_predictor.cls_score.weight"
    if key not in state:
        raise WeightsError(f"{source} does not fit a Faster R-CNN: key {key!r} is missing")
    return int(state[key].shape[0])
