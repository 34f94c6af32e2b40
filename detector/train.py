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
"""

from __future__ import annotations

import logging
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList

from detector.detections import Detections
from detector.evaluate import evaluate, load_coco

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
        hflip: random horizontal flips.
        cache_features: cache the maps of a frozen trunk (ignored for backbones without one).
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


# ---------------------------------------------------------------------------------------------- data
@dataclass
class Sample:
    """One image and its boxes: ``image`` uint8 RGB [H, W, 3]; ``boxes`` float32 [N, 4] xyxy pixels;
    ``labels`` int64 [N] indices into the model's class names (1..K)."""

    image_id: int
    path: Path
    boxes: np.ndarray
    labels: np.ndarray


class CocoDetectionData:
    """A COCO-format dataset read for training: non-crowd boxes of the classes in ``class_names``.

    Args:
        json_path: the COCO JSON; ``file_name`` is relative to the JSON's folder (or absolute).
        class_names: the model's label map (index 0 background). None = ("__background__", the
            JSON's categories in id order).
    """

    def __init__(self, json_path: str | Path, class_names: Sequence[str] | None = None) -> None:
        self.json_path = Path(json_path)
        self.coco = load_coco(self.json_path)
        cats = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda c: c["id"])
        if class_names is None:
            class_names = ("__background__", *(c["name"] for c in cats))
        self.class_names = tuple(class_names)
        index = {n: i for i, n in enumerate(self.class_names)}
        cat_to_label = {c["id"]: index[c["name"]] for c in cats if c["name"] in index}
        self.samples: list[Sample] = []
        root = self.json_path.parent
        for image_id in sorted(self.coco.imgs):
            info = self.coco.imgs[image_id]
            anns = [a for a in self.coco.imgToAnns.get(image_id, [])
                    if not a.get("iscrowd", 0) and a["category_id"] in cat_to_label and a["bbox"][2] >= 1 and a["bbox"][3] >= 1]
            boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], np.float32).reshape(-1, 4)
            labels = np.array([cat_to_label[a["category_id"]] for a in anns], np.int64)
            path = Path(info["file_name"])
            self.samples.append(Sample(image_id, path if path.is_absolute() else root / path, boxes, labels))
        if not self.samples:
            raise ValueError(f"{self.json_path} has no images")

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, i: int) -> np.ndarray:
        """uint8 RGB [H, W, 3] of sample ``i``."""
        path = self.samples[i].path
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"image {path} of {self.json_path} cannot be read")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------------------- model plumbing
def has_frozen_trunk(model: nn.Module) -> bool:
    b = model.backbone
    return bool(getattr(b, "frozen_trunk", False)) and hasattr(b, "trunk_features") and hasattr(b, "neck")


@dataclass
class Prepared:
    """One resized (and maybe flipped) training image: either the image tensor [3, h, w] in [0, 1] or
    the frozen trunk's maps (fp16) of its padded batch tensor; target boxes in resized pixels."""

    image_size: tuple[int, int]  # (h, w) after resizing, before padding
    padded: tuple[int, int]  # (H, W) padded to the transform's size_divisible
    original_size: tuple[int, int]
    target: dict[str, torch.Tensor]
    maps: list[torch.Tensor] | None = None
    image: torch.Tensor | None = None


class Trainer:
    """Runs the training of ``model`` on ``data`` under ``config`` (see the module docstring).

    ``model``: a torchvision ``FasterRCNN`` (any builder). Its transform's ``min_size`` is used for
    evaluation; ``config.scales`` for training.
    """

    def __init__(self, model: nn.Module, data: CocoDetectionData, config: TrainConfig,
                 val: Sequence[tuple[str, CocoDetectionData]] = (), device: str = "cpu") -> None:
        self.model = model.to(device)
        self.data, self.config, self.val = data, config, list(val)
        self.device = torch.device(device)
        self.cached = config.cache_features and has_frozen_trunk(model)
        if config.rpn_pre_nms_train is not None:
            model.rpn._pre_nms_top_n["training"] = int(config.rpn_pre_nms_train)
        if config.rpn_post_nms_train is not None:
            model.rpn._post_nms_top_n["training"] = int(config.rpn_post_nms_train)
        self.cache: dict[tuple[int, int, bool], Prepared] = {}
        self.val_cache: dict[tuple[str, int], Prepared] = {}
        self.eval_size = int(model.transform.min_size[-1])
        self.scales = tuple(int(s) for s in config.scales) or (self.eval_size,)
        self.rng = random.Random(config.seed)
        self.history: list[dict] = []
        self.iteration = 0
        self.epoch = 0

    # ------------------------------------------------------------------ preparation and caching
    def _prepare(self, rgb: np.ndarray, boxes: np.ndarray, labels: np.ndarray, scale: int, flip: bool) -> Prepared:
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
        boxes = torch.from_numpy(boxes.copy())
        if flip:
            image = image.flip(-1)
            w = image.shape[-1]
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
        target = {"boxes": boxes, "labels": torch.from_numpy(labels.copy())}
        transform = self.model.transform
        saved = transform.min_size
        transform.min_size = (scale,)
        try:
            with torch.no_grad():
                images, targets = transform([image.to(self.device)], [{k: v.to(self.device) for k, v in target.items()}])
        finally:
            transform.min_size = saved
        prepared = Prepared(tuple(images.image_sizes[0]), tuple(images.tensors.shape[-2:]), tuple(rgb.shape[:2]), targets[0])
        if self.cached:
            prepared.maps = [m[0].half() for m in self.model.backbone.trunk_features(images.tensors)]
        else:
            prepared.image = images.tensors[0]
        return prepared

    def _train_item(self, i: int) -> Prepared:
        scale = self.rng.choice(self.scales)
        flip = self.config.hflip and self.rng.random() < 0.5
        key = (i, scale, flip)
        if key in self.cache:
            return self.cache[key]
        s = self.data.samples[i]
        prepared = self._prepare(self.data.image(i), s.boxes, s.labels, scale, flip)
        if self.cached:
            self.cache[key] = prepared
        return prepared

    def _batch(self, items: Sequence[Prepared]) -> tuple[ImageList, dict[str, torch.Tensor], list[dict]]:
        """Padded batch → (ImageList, features of the trainable part, targets)."""
        height = max(p.padded[0] for p in items)
        width = max(p.padded[1] for p in items)
        sizes = [p.image_size for p in items]
        if self.cached:
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
                p = self._prepare(data.image(i), s.boxes, s.labels, self.eval_size, False)
                if self.cached:
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
        per_epoch = cfg.iters_per_epoch or math.ceil(len(self.data) / cfg.batch_size)
        total = per_epoch * cfg.epochs
        started = time.perf_counter()
        optimizer, current_step = None, None
        order: list[int] = []
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
                batch = []
                for _ in range(cfg.batch_size):
                    if not order:
                        order = list(range(len(self.data)))
                        self.rng.shuffle(order)
                    batch.append(self._train_item(order.pop()))
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
                if tqdm and hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{lr:.1e}")
                if (it + 1) % cfg.log_every == 0:
                    print(f"epoch {epoch + 1} it {it + 1}/{per_epoch} [{step}] loss {sums['loss'] / (it + 1):.4f} "
                          f"lr {lr:.1e} cache {len(self.cache)} {time.perf_counter() - started:.0f}s", flush=True)
            record = {"epoch": epoch + 1, "step": step, "iterations": (epoch + 1) * per_epoch,
                      "seconds": round(time.perf_counter() - started, 1),
                      **{k: round(v / per_epoch, 5) for k, v in sums.items()}}
            if self.val:
                record["val"] = self.evaluate()
            self.history.append(record)
            if on_epoch:
                on_epoch(self, {**record, "optimizer": optimizer.state_dict()})
            if cfg.time_limit_s is not None and time.perf_counter() - started > cfg.time_limit_s:
                print(f"time limit {cfg.time_limit_s:.0f}s reached after epoch {epoch + 1}", flush=True)
                break
        return self.history


def config_dict(config: TrainConfig) -> dict:
    """A JSON-ready dict of the settings (for checkpoints' meta and the model card)."""
    d = asdict(config)
    d["scales"] = list(d["scales"])
    return d

