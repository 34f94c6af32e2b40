"""Training and fine-tuning of any Faster R-CNN builder on COCO-format data, with the paper's sampling.

The sampling is the model's own (``detector.builders.PAPER_TRAINING`` for ``paper``): 256 anchors per
image with at most half positive (IoU ≥ 0.7 positive, < 0.3 negative), 128 RoIs per image with 25 %
foreground. The losses are torchvision's; the paper's λ weighting is mapped onto them as follows.

The paper (Ren et al. 2015, eq. 1) normalises the RPN loss as

    L = 1/N_cls Σ L_cls + λ · 1/N_reg Σ p*_i L_reg,   N_cls = 256 (the anchor minibatch),
                                                       N_reg ≈ 2400 (the anchor *locations*), λ = 10.

torchvision's ``RegionProposalNetwork`` divides both the objectness and the box sums by the number of
sampled anchors (B · 256 for a batch of B), i.e. it uses N_cls for both terms with weight 1. The
paper's weighting is therefore reproduced by multiplying torchvision's RPN box loss by

    w = λ · N_cls / N_reg,   N_reg = Σ_levels H_l · W_l (anchor locations of one padded image),

which is ≈ 1.1 for a 768×576 image on the stride-16 + stride-32 levels (λ = 10, 2160 locations): the
paper's "roughly equally weighted" terms. The Fast R-CNN head keeps λ = 1 over the sampled RoIs, as
torchvision already normalises it. (torchvision's smooth-L1 uses β = 1/9, as Detectron does; the
paper's is β = 1 — left as torchvision has it.)

Frozen trunks (``backbone.frozen_trunk``, e.g. ``yolov3_tiny``) have their maps cached per
(image, scale, flip) on first use, so that every later epoch runs only the trainable neck, the RPN and
the RoI head. ``schedule="alternating"`` is the paper's 4-step training: (1) RPN with the shared
convolutions, (2) detector with the shared convolutions on the step-1 RPN's fixed proposals, (3) RPN
head alone on the now fixed shared convolutions, (4) detector head alone.

Data: one or several COCO datasets mixed by weight (``detector.train_data.WeightedMix``), their
``iscrowd=1`` boxes kept as ignore regions that neither sampler may call background
(``detector.ignore``, on unless ``ignore_ioa`` is None). ``augment`` turns on the on-the-fly
augmentation of ``detector.augment`` (mosaic, scale, color, flip); then nothing can be cached and a
frozen trunk runs under ``no_grad`` on every iteration, its neck and the heads with gradients.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import resize_boxes

from detector.augment import Annotated, AugmentConfig, Augmenter, hflip
from detector.detections import Detections
from detector.evaluate import evaluate
from detector.ignore import use_ignore_regions
from detector.train_data import CocoDetectionData, Sample, WeightedMix

__all__ = ["CocoDetectionData", "Sample", "TrainConfig", "Trainer", "WeightedMix", "config_dict", "has_frozen_trunk"]

log = logging.getLogger(__name__)

SCHEDULES = ("joint", "alternating")
ALTERNATING_STEPS = ("rpn", "detector", "rpn_head", "detector_head")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (SGD with momentum, step decay).

    Attributes:
        epochs: passes over the data (for ``alternating``: split evenly over the 4 steps).
        batch_size: images per iteration.
        lr: SGD learning rate (paper: 0.001), reached after ``warmup_iters`` linear warm-up.
        lr_drop_at: fraction of all iterations (or of ``time_limit_s``, whichever is reached first) after
            which the lr is multiplied by 0.1 (paper: 60k of 80k iterations).
        box_lambda: the paper's λ for the RPN box loss (see the module docstring for the mapping).
        scales: training short-side sizes, one drawn per image (scale jitter); empty = the model's.
        hflip: random horizontal flips of the un-augmented (cacheable) path; with ``augment`` the flips
            are its "flip".
        cache_features: cache the maps of a frozen trunk (ignored for backbones without one, and for
            training images when ``augment`` is on; evaluation images are always cached).
        augment: on-the-fly augmentations, a subset of ``detector.augment.AUGMENTATIONS``
            ("mosaic", "scale", "color", "flip"); empty = none.
        scale_range: the zoom factors of "scale" (log-uniform; 0.3–3: far shots become close-ups and back).
        mosaic_prob: the share of samples made into 2×2 mosaics when "mosaic" is on.
        keep_cut_bottom: ``detector.augment.AugmentConfig.keep_cut_bottom`` (0 = off): a box cut by the crop's
            bottom edge, its top inside, stays a label with this share visible (a person from the chest up).
        ignore_ioa: the ignore label's IoA threshold (``detector.ignore``); None = ignore regions are
            dropped and may be sampled as background (torchvision's behaviour).
        part_negatives: the share of the RoI head's sampled negatives drawn from RoIs lying inside a
            labelled object (``detector.ignore``: a head or torso of a person); 0 = uniform (torchvision).
        hard_negatives: the share of the RoI head's sampled negatives drawn from those the head itself
            scores surest as objects (online hard-negative mining, ``detector.ignore``); 0 = uniform.
        soft_labels: the RoI head's classifier learns each positive's class at its label's ``score`` (the
            teacher's confidence) and the rest as background, instead of 1 (``detector.ignore``).
        roi_fg_iou: the RoI head's positive IoU (None = the model's, the paper's 0.5); between the
            background boundary (0.5) and it an RoI is neither.
        roi_batch: RoIs the head samples per image (None = the model's, the paper's 128).
        trunk_precision: "fp32", or "bf16" to run a frozen trunk under bf16 autocast (2× faster where
            the CPU has AMX/AVX-512 BF16, slower where it has not; the maps differ by ~2 %).
        iters_per_epoch: None = one pass over the data.
        time_limit_s: stop early (after a checkpoint) when training has run this long.
        rpn_pre_nms_train / rpn_post_nms_train: RPN proposals per level before NMS / per image after
            NMS while training (paper: 12000 / 2000; None keeps the model's). On 2 CPU cores the NMS
            over 12000 boxes takes ~0.4 s per image, so the recipe uses fewer.
    """

    epochs: int = 10
    batch_size: int = 2
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_iters: int = 100
    lr_drop_at: float = 0.75
    box_lambda: float = 10.0
    scales: tuple[int, ...] = ()
    hflip: bool = True
    cache_features: bool = True
    schedule: str = "joint"
    seed: int = 0
    iters_per_epoch: int | None = None
    time_limit_s: float | None = None
    log_every: int = 50
    rpn_pre_nms_train: int | None = None
    rpn_post_nms_train: int | None = None
    augment: tuple[str, ...] = ()
    scale_range: tuple[float, float] = (0.3, 3.0)
    mosaic_prob: float = 0.5
    keep_cut_bottom: float = 0.0
    ignore_ioa: float | None = 0.5
    part_negatives: float = 0.0
    hard_negatives: float = 0.0
    soft_labels: bool = False
    roi_fg_iou: float | None = None
    roi_batch: int | None = None
    trunk_precision: str = "fp32"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)!r} must be an integer ≥ 1")
        if not self.lr > 0:
            raise ValueError(f"lr {self.lr!r} must be > 0")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r} must be one of {SCHEDULES}")
        if self.schedule == "alternating" and self.epochs < 4:
            raise ValueError(f"the alternating schedule has 4 steps and needs epochs ≥ 4; got {self.epochs}")
        if any(int(s) < 32 for s in self.scales):
            raise ValueError(f"scales {self.scales} must be image sizes ≥ 32 px")
        if not 0.0 < self.lr_drop_at <= 1.0:
            raise ValueError(f"lr_drop_at {self.lr_drop_at} must be in (0, 1]")
        if self.trunk_precision not in ("fp32", "bf16"):
            raise ValueError(f"trunk_precision {self.trunk_precision!r} must be 'fp32' or 'bf16'")
        if self.ignore_ioa is not None and not 0.0 < self.ignore_ioa <= 1.0:
            raise ValueError(f"ignore_ioa {self.ignore_ioa} must be in (0, 1] (or None: no ignore label)")
        if not 0.0 <= self.part_negatives <= 1.0:
            raise ValueError(f"part_negatives {self.part_negatives} must be in [0, 1]")
        if not 0.0 <= self.hard_negatives <= 1.0:
            raise ValueError(f"hard_negatives {self.hard_negatives} must be in [0, 1]")
        if self.part_negatives and self.hard_negatives:
            raise ValueError("part_negatives and hard_negatives choose the same negatives two ways: use one")
        if (self.part_negatives or self.hard_negatives or self.soft_labels or self.roi_fg_iou is not None) \
                and self.ignore_ioa is None:
            raise ValueError("part_negatives, hard_negatives, soft_labels and roi_fg_iou need the ignore-aware heads: "
                             "ignore_ioa must not be None")
        if self.roi_batch is not None and not 1 <= self.roi_batch <= 4096:
            raise ValueError(f"roi_batch {self.roi_batch} must be RoIs per image in 1..4096")
        if self.roi_fg_iou is not None and not 0.5 <= self.roi_fg_iou <= 1.0:
            raise ValueError(f"roi_fg_iou {self.roi_fg_iou} must be in [0.5, 1] (the background boundary is 0.5)")
        self.augment_config()  # validates augment, scale_range, mosaic_prob

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig(ops=tuple(self.augment), scale_range=tuple(self.scale_range), mosaic_prob=self.mosaic_prob,
                             keep_cut_bottom=self.keep_cut_bottom)


# ------------------------------------------------------------------------------- model plumbing
def has_frozen_trunk(model: nn.Module) -> bool:
    b = model.backbone
    return bool(getattr(b, "frozen_trunk", False)) and hasattr(b, "trunk_features") and hasattr(b, "neck")


@dataclass
class Prepared:
    """One resized (and maybe flipped) training image: either the normalised image tensor [3, h, w]
    (unpadded) or the frozen trunk's maps (fp16) of it padded to ``padded``; target boxes in resized pixels."""

    image_size: tuple[int, int]  # (h, w) after resizing, before padding
    padded: tuple[int, int]  # (H, W) padded to the transform's size_divisible
    original_size: tuple[int, int]
    target: dict[str, torch.Tensor]
    maps: list[torch.Tensor] | None = None
    image: torch.Tensor | None = None


class Trainer:
    """Runs the training of ``model`` on ``data`` under ``config`` (see the module docstring).

    ``model``: a torchvision ``FasterRCNN`` (any builder). Its transform's ``min_size`` is used for
    evaluation; ``config.scales`` for training. ``data``: one dataset, or (dataset, weight) pairs
    read with the same class names, mixed by weight.
    """

    def __init__(self, model: nn.Module, data: CocoDetectionData | Sequence[tuple[CocoDetectionData, float]],
                 config: TrainConfig, val: Sequence[tuple[str, CocoDetectionData]] = (), device: str = "cpu") -> None:
        self.rng = random.Random(config.seed)
        self.mix = WeightedMix([(data, 1.0)] if isinstance(data, CocoDetectionData) else list(data), self.rng)
        self.data = self.mix.sets[0]
        if config.ignore_ioa is not None:
            use_ignore_regions(model, config.ignore_ioa, config.part_negatives, config.roi_fg_iou,
                               config.hard_negatives, config.soft_labels)
        if config.roi_batch is not None:
            model.roi_heads.fg_bg_sampler.batch_size_per_image = config.roi_batch
        self.model = model.to(device)
        self.config, self.val = config, list(val)
        self.device = torch.device(device)
        self.augmenter = Augmenter(config.augment_config())
        self.np_rng = np.random.default_rng(config.seed)
        self.frozen_trunk = has_frozen_trunk(model)
        self.cached = config.cache_features and self.frozen_trunk and not self.augmenter.active
        self.cache_val = config.cache_features and self.frozen_trunk
        self.channels_last = self.frozen_trunk and self._trunk_takes_channels_last()
        if config.rpn_pre_nms_train is not None:
            model.rpn._pre_nms_top_n["training"] = int(config.rpn_pre_nms_train)
        if config.rpn_post_nms_train is not None:
            model.rpn._post_nms_top_n["training"] = int(config.rpn_post_nms_train)
        self.cache: dict[tuple[int, int, int, bool], Prepared] = {}
        self.val_cache: dict[tuple[str, int], Prepared] = {}
        self.eval_size = int(model.transform.min_size[-1])
        self.scales = tuple(int(s) for s in config.scales) or (self.eval_size,)
        self.data_seconds = 0.0  # time spent reading, augmenting and resizing training images
        self.history: list[dict] = []
        self.iteration = 0
        self.epoch = 0

    # ------------------------------------------------------------------ preparation and caching
    def _resize_factor(self, scale: int) -> Callable[[int, int], float]:
        """(height, width) → the factor of the model transform's rule: short side → ``scale``, long
        side ≤ its max_size."""
        max_size = self.model.transform.max_size
        return lambda h, w: min(scale / min(h, w), max_size / max(h, w))

    def _prepare(self, sample: Annotated, scale: int, flip: bool, cache: bool, resized: bool = False) -> Prepared:
        """Resize ``sample`` to short side ``scale`` (maybe mirrored; ``resized``: it is at its training
        size already); with ``cache``, run the frozen trunk now and keep its maps (fp16) instead of the
        image. Target: "boxes" [N, 4], "labels" [N], "ignore" [M, 4] (in the resized pixels), "scores" [N]."""
        if flip:
            sample = hflip(sample)
        rgb, transform = sample.image, self.model.transform
        h, w = rgb.shape[:2]
        # the resize is OpenCV's bilinear on uint8 (as torchvision's interpolate on float, ~5× faster),
        # and it leaves the transform alone (not switched to another size, nor drawing from torch's RNG)
        factor = 1.0 if resized else self._resize_factor(scale)(h, w)
        size = (math.floor(h * factor), math.floor(w * factor))
        if size != (h, w):
            rgb = cv2.resize(rgb, size[::-1], interpolation=cv2.INTER_LINEAR)
        with torch.no_grad():
            image = transform.normalize(torch.from_numpy(rgb).to(self.device).permute(2, 0, 1).float().div_(255.0))
        step = transform.size_divisible
        padded = (math.ceil(size[0] / step) * step, math.ceil(size[1] / step) * step)

        def resized(boxes: np.ndarray) -> torch.Tensor:
            return resize_boxes(torch.from_numpy(boxes).to(self.device), [h, w], list(size))

        target = {"boxes": resized(sample.boxes), "labels": torch.from_numpy(sample.labels).to(self.device),
                  "ignore": resized(sample.ignore), "scores": torch.from_numpy(sample.scores).to(self.device)}
        prepared = Prepared(size, padded, (h, w), target)
        if cache:
            batch = image.new_zeros(1, 3, *padded)
            batch[0, :, : size[0], : size[1]] = image
            prepared.maps = [m[0].half() for m in self._trunk(batch)]
        else:
            prepared.image = image
        return prepared

    def _annotated(self, d: int, i: int) -> Annotated:
        return self.mix.sets[d].annotated(i)

    def _train_item(self, d: int, i: int) -> Prepared:
        """Sample ``i`` of dataset ``d``, augmented (then mosaics draw their other images from the mix)
        or, without augmentation, flipped at random and cached."""
        started = time.perf_counter()
        scale = self.rng.choice(self.scales)
        if self.augmenter.active:
            sample = self.augmenter(self._annotated(d, i), self.np_rng, more=lambda: self._annotated(*self.mix.draw()),
                                    resize=self._resize_factor(scale))
            prepared = self._prepare(sample, scale, False, cache=False, resized=True)
        else:
            flip = self.config.hflip and self.rng.random() < 0.5
            key = (d, i, scale, flip)
            prepared = self.cache.get(key)
            if prepared is None:
                prepared = self._prepare(self._annotated(d, i), scale, flip, cache=self.cached)
                if self.cached:
                    self.cache[key] = prepared
        self.data_seconds += time.perf_counter() - started
        return prepared

    def _trunk(self, tensors: torch.Tensor) -> list[torch.Tensor]:
        """The frozen trunk's maps of a padded batch [B, 3, H, W] → fp32 contiguous [B, C_l, H/s_l, W/s_l].

        Under no_grad (nothing below the neck is trained). The input goes in channels-last when the trunk
        takes it: oneDNN's convolutions run 1.6× faster so on a 2-core Xeon (YOLOv3-tiny trunk, 2×544×736:
        0.39 → 0.25 CPU-s), with the same results to 3e-5; the maps come back contiguous for the neck and heads.
        ``trunk_precision="bf16"`` adds autocast (0.13 CPU-s on AMX; maps within ~2 % of fp32)."""
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.config.trunk_precision == "bf16"
                    else contextlib.nullcontext())
        if self.channels_last:
            tensors = tensors.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast:
            maps = self.model.backbone.trunk_features(tensors)
        return [m.float().contiguous() for m in maps]

    def _trunk_takes_channels_last(self) -> bool:
        """Whether the frozen trunk runs on channels-last input with the same maps (to 1e-3 of their
        range), checked once on a random 128×128 batch: a trunk that reshapes with ``view`` (a converted
        graph, say) may not, and then gets contiguous input."""
        probe = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)).to(self.device)
        with torch.no_grad():
            plain = self.model.backbone.trunk_features(probe)
            try:
                fast = self.model.backbone.trunk_features(probe.contiguous(memory_format=torch.channels_last))
            except RuntimeError:
                return False
        return all(a.shape == b.shape and float((a - b).abs().max()) <= 1e-3 * max(float(b.abs().max()), 1e-6)
                   for a, b in zip(fast, plain, strict=True))

    def _batch(self, items: Sequence[Prepared]) -> tuple[ImageList, dict[str, torch.Tensor], list[dict]]:
        """Padded batch → (ImageList, features of the trainable part, targets)."""
        height = max(p.padded[0] for p in items)
        width = max(p.padded[1] for p in items)
        sizes = [p.image_size for p in items]
        if items[0].maps is not None:
            levels = []
            for level, stride in enumerate(self.model.backbone.strides):
                channels = items[0].maps[level].shape[0]
                # padded sizes are multiples of the transform's size_divisible (32), so maps are exact
                out = torch.zeros(len(items), channels, height // stride, width // stride, device=self.device)
                for b, p in enumerate(items):
                    m = p.maps[level]
                    out[b, :, : m.shape[-2], : m.shape[-1]] = m.float()
                levels.append(out)
            features = self.model.backbone.neck(levels)
            tensors = torch.zeros((), device=self.device).expand(len(items), 3, height, width)
        else:
            tensors = torch.zeros(len(items), 3, height, width, device=self.device)
            for b, p in enumerate(items):
                tensors[b, :, : p.image.shape[-2], : p.image.shape[-1]] = p.image
            if self.frozen_trunk:
                features = self.model.backbone.neck(self._trunk(tensors))
            else:
                features = self.model.backbone(tensors)
            if isinstance(features, torch.Tensor):
                features = {"0": features}
        return ImageList(tensors, sizes), features, [p.target for p in items]

    # ------------------------------------------------------------------ losses
    def losses(self, items: Sequence[Prepared], step: str = "joint") -> dict[str, torch.Tensor]:
        """The four Faster R-CNN losses of a batch, the RPN box loss weighted by λ·N_cls/N_reg.

        ``step``: "joint", or one of the alternating steps (which parts get gradients)."""
        model = self.model
        shared_fixed = step in ("rpn_head", "detector_head")
        with torch.set_grad_enabled(not shared_fixed):
            images, features, targets = self._batch(items)
        if shared_fixed:
            features = {k: v.detach() for k, v in features.items()}
        out: dict[str, torch.Tensor] = {}
        if step in ("detector", "detector_head"):
            with torch.no_grad():  # the RPN's proposals are fixed inputs of the detector steps
                proposals, _ = model.rpn(images, {k: v.detach() for k, v in features.items()}, targets)
        else:
            proposals, rpn_losses = model.rpn(images, features, targets)
            locations = sum(f.shape[-2] * f.shape[-1] for f in features.values())
            weight = self.config.box_lambda * model.rpn.fg_bg_sampler.batch_size_per_image / locations
            out["loss_objectness"] = rpn_losses["loss_objectness"]
            out["loss_rpn_box_reg"] = weight * rpn_losses["loss_rpn_box_reg"]
        if step != "rpn" and step != "rpn_head":
            proposals = [p.detach() for p in proposals]
            _, roi_losses = model.roi_heads(features, proposals, images.image_sizes, targets)
            out.update(roi_losses)
        return out

    def _parameters(self, step: str) -> list[nn.Parameter]:
        m = self.model
        shared = [p for p in m.backbone.parameters() if p.requires_grad]
        rpn = [p for p in m.rpn.parameters() if p.requires_grad]
        roi = [p for p in m.roi_heads.parameters() if p.requires_grad]
        return {"joint": shared + rpn + roi, "rpn": shared + rpn, "detector": shared + roi,
                "rpn_head": rpn, "detector_head": roi}[step]

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def predict(self, name: str, data: CocoDetectionData) -> dict[int, Detections]:
        """Detections of every image of ``data`` at the evaluation size (model's min_size)."""
        model = self.model
        model.eval()
        out: dict[int, Detections] = {}
        for i, s in enumerate(data.samples):
            key = (name, i)
            p = self.val_cache.get(key)
            if p is None:
                p = self._prepare(data.annotated(i), self.eval_size, False, cache=self.cache_val)
                if self.cache_val:
                    self.val_cache[key] = p
            images, features, _ = self._batch([p])
            proposals, _ = model.rpn(images, features)
            dets, _ = model.roi_heads(features, proposals, images.image_sizes)
            d = model.transform.postprocess(dets, images.image_sizes, [p.original_size])[0]
            out[s.image_id] = Detections(d["boxes"].cpu().numpy(), d["scores"].cpu().numpy(),
                                         d["labels"].cpu().numpy(), data.class_names)
        return out

    def evaluate(self) -> dict[str, dict]:
        return {name: evaluate(data.coco, self.predict(name, data)) for name, data in self.val}

    # ------------------------------------------------------------------ the loop
    def _plan(self) -> list[str]:
        """The step of every epoch."""
        if self.config.schedule == "joint":
            return ["joint"] * self.config.epochs
        per = self.config.epochs / 4
        return [ALTERNATING_STEPS[min(3, int(e / per))] for e in range(self.config.epochs)]

    def run(self, on_epoch: Callable[[Trainer, dict], None] | None = None, start_epoch: int = 0,
            optimizer_state: dict | None = None) -> list[dict]:
        """Train; after each epoch evaluate on ``val`` and call ``on_epoch(self, record)``."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        plan = self._plan()
        per_epoch = cfg.iters_per_epoch or math.ceil(len(self.mix) / cfg.batch_size)
        total = per_epoch * cfg.epochs
        started = time.perf_counter()
        optimizer, current_step = None, None
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm comes with the dev tools
            tqdm = None
        for epoch in range(start_epoch, cfg.epochs):
            self.epoch = epoch
            step = plan[epoch]
            if step != current_step:
                # a new optimizer for every alternating step (its parameters change)
                params = self._parameters(step)
                optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
                if optimizer_state is not None and epoch == start_epoch:
                    optimizer.load_state_dict(optimizer_state)
                current_step = step
                steps_done = 0  # warm-up restarts with each alternating step
            self.model.train()
            sums: dict[str, float] = {}
            epoch_started, data_before, done = time.perf_counter(), self.data_seconds, 0
            bar = tqdm(range(per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs} [{step}]", file=sys.stderr,
                       disable=not sys.stderr.isatty()) if tqdm else range(per_epoch)
            for it in bar:
                self.iteration = epoch * per_epoch + it
                # the drop comes after lr_drop_at of the planned iterations, or of the time limit if that
                # runs out first, so that a run cut short by its time budget still gets its low-lr phase
                elapsed = time.perf_counter() - started
                progress = self.iteration / total
                if cfg.time_limit_s:
                    progress = max(progress, elapsed / cfg.time_limit_s)
                lr = cfg.lr * (0.1 if progress >= cfg.lr_drop_at else 1.0)
                if steps_done < cfg.warmup_iters:
                    lr *= (steps_done + 1) / cfg.warmup_iters
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch = [self._train_item(*self.mix.draw()) for _ in range(cfg.batch_size)]
                losses = self.losses(batch, step)
                loss = sum(losses.values())
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"loss became {loss.item()} at iteration {self.iteration} ({ {k: float(v) for k, v in losses.items()} }); lower the lr"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps_done += 1
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
                done = it + 1
                if tqdm and hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{lr:.1e}")
                if done % cfg.log_every == 0:
                    rate = done / (time.perf_counter() - epoch_started)
                    print(f"epoch {epoch + 1} it {done}/{per_epoch} [{step}] loss {sums['loss'] / done:.4f} "
                          f"lr {lr:.1e} {rate:.2f} it/s cache {len(self.cache)} {time.perf_counter() - started:.0f}s",
                          flush=True)
                if cfg.time_limit_s is not None and time.perf_counter() - started > cfg.time_limit_s:
                    break  # mid-epoch: the epoch's evaluation and checkpoint still follow
            seconds = time.perf_counter() - epoch_started
            record = {"epoch": epoch + 1, "step": step, "iterations": epoch * per_epoch + done,
                      "seconds": round(time.perf_counter() - started, 1),
                      "iters_per_s": round(done / seconds, 3) if seconds > 0 else None,
                      "data_s_per_iter": round((self.data_seconds - data_before) / max(done, 1), 4),
                      **{k: round(v / max(done, 1), 5) for k, v in sums.items()}}
            if self.val:
                record["val"] = self.evaluate()
            self.history.append(record)
            if on_epoch:
                on_epoch(self, {**record, "optimizer": optimizer.state_dict()})
            if cfg.time_limit_s is not None and time.perf_counter() - started > cfg.time_limit_s:
                print(f"time limit {cfg.time_limit_s:.0f}s reached in epoch {epoch + 1} after {done} iterations",
                      flush=True)
                break
        return self.history


def config_dict(config: TrainConfig) -> dict:
    """A JSON-ready dict of the settings (for checkpoints' meta and the model card)."""
    d = asdict(config)
    for key in ("scales", "augment", "scale_range"):
        d[key] = list(d[key])
    return d

