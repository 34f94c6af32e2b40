"""Training augmentation of an image with its boxes: flips, colour jitter, scale jitter (zoom in / out)
and 4-image mosaics — numpy and OpenCV on uint8 RGB images, boxes in (x1, y1, x2, y2) pixels.

The geometric operations are one primitive, :func:`place`: scale the image by ``s`` about its origin,
shift it by ``t`` and cut it to a canvas. Pixel-edge coordinates are used throughout (a box's x2 is the
right edge of its last pixel), so a box keeps covering the same pixels at any scale.

Box rules after a crop (the canvas edge, a mosaic quadrant):
* a labelled box that stays ≥ ``min_visible`` (60 %) of its area inside keeps its label, clipped to the
  canvas — an object cut by the frame edge is still that object (v2 learnt the edge-cut car as
  background);
* one less visible, or whose clipped box became narrower than ``min_side`` px, becomes an **ignore**
  box (its visible part): neither object nor background for the samplers (``detector.ignore``), since
  a half-visible person is not a person to learn, and not background either;
* one not visible at all is dropped. Ignore boxes move with the image and are dropped only when
  nothing of them is left.

Deterministic under a seed: every random draw comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

AUGMENTATIONS = ("mosaic", "scale", "color", "flip")

# (height, width) of an image → the factor that takes it to the training size
Resize = Callable[[int, int], float]


def _unit(height: int, width: int) -> float:
    return 1.0


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


@dataclass
class Annotated:
    """An image and its boxes.

    ``image``: uint8 RGB [H, W, 3]; ``boxes``: float32 [N, 4] xyxy pixels; ``labels``: int64 [N];
    ``ignore``: float32 [M, 4] xyxy pixels, regions neither object nor background; ``scores``: float32
    [N], each label's confidence (an autolabeller's; None = 1 for every box).
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray = field(default_factory=_empty_boxes)
    scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.image.dtype != np.uint8 or self.image.ndim != 3 or self.image.shape[2] != 3:
            raise ValueError(f"image must be uint8 RGB [H, W, 3]; got {self.image.dtype} {self.image.shape}")
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, np.int64).reshape(-1)
        self.ignore = np.asarray(self.ignore, np.float32).reshape(-1, 4)
        if len(self.boxes) != len(self.labels):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.labels)} labels")
        self.scores = (np.ones(len(self.labels), np.float32) if self.scores is None
                       else np.asarray(self.scores, np.float32).reshape(-1))
        if len(self.scores) != len(self.labels):
            raise ValueError(f"{len(self.labels)} labels but {len(self.scores)} scores")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.image.shape[1], self.image.shape[0]


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run, and their ranges.

    Attributes:
        ops: a subset of ``AUGMENTATIONS``; empty = none.
        scale_range: (lo, hi) object scale factors; drawn log-uniformly, so zoom-in (> 1: a window of the
            image blown up to the canvas, far shots become close-ups) and zoom-out (< 1: the image shrunk
            onto a grey canvas, close-ups become far shots) are equally likely.
        mosaic_prob: the share of samples made into a 2×2 mosaic (when "mosaic" is on).
        brightness / contrast / saturation: factors drawn from [1 − v, 1 + v]; hue: a shift drawn from
            [−v, v] of the hue circle.
        min_visible: area share of a box that must stay inside a crop for it to keep its label.
        keep_cut_bottom: 0 = off; else a box cut only by the crop's bottom (and side) edges, its top inside,
            keeps its label with this share visible (a person seen from the chest or waist up, as a webcam
            frames one, is a person: the held-out set and COCO box the visible part), and half of the
            zoom-ins whose kept-in-view box is taller than the canvas show that box's top.
        min_side: boxes narrower or lower than this (px, after the transform) become ignore boxes: a
            person-shaped box (1:2) under 6 px wide stays below IoU 0.3 with every 16 px anchor (0.28
            at 6×12 on 11×23), so it would be learnt only through torchvision's forced best-anchor match.
        fill: the grey of canvas areas the image does not cover.
    """

    ops: tuple[str, ...] = ()
    scale_range: tuple[float, float] = (0.3, 3.0)
    mosaic_prob: float = 0.5
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.5
    hue: float = 0.03
    min_visible: float = 0.6
    keep_cut_bottom: float = 0.0
    min_side: float = 6.0
    fill: int = 114

    def __post_init__(self) -> None:
        unknown = [o for o in self.ops if o not in AUGMENTATIONS]
        if unknown:
            raise ValueError(f"augmentation {unknown[0]!r} is unknown; expected some of {', '.join(AUGMENTATIONS)}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale range {lo}, {hi} must be two factors with 0 < lo ≤ hi")
        if not 0.0 <= self.mosaic_prob <= 1.0:
            raise ValueError(f"mosaic probability {self.mosaic_prob} must be in [0, 1]")
        if not 0.0 < self.min_visible <= 1.0:
            raise ValueError(f"min_visible {self.min_visible} must be in (0, 1]")
        if not 0.0 <= self.keep_cut_bottom <= 1.0:
            raise ValueError(f"keep_cut_bottom {self.keep_cut_bottom} must be a share in [0, 1] (0 = off)")


# ------------------------------------------------------------------------------------- geometry
def _move(boxes: np.ndarray, sx: float, sy: float, tx: float, ty: float) -> np.ndarray:
    return (boxes * np.array([sx, sy, sx, sy], np.float32) + np.array([tx, ty, tx, ty], np.float32)).astype(np.float32)


def _clip(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.clip(boxes, 0, np.array([width, height, width, height], np.float32))


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def crop_rules(boxes: np.ndarray, labels: np.ndarray, ignore: np.ndarray, width: int, height: int,
               min_visible: float, min_side: float, keep_cut_bottom: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the crop rules of the module docstring to boxes already moved into a width × height canvas
    (and, with ``keep_cut_bottom``, keep a box whose top is inside and bottom cut with that share visible).

    Returns (boxes [N', 4], labels [N'], ignore [M', 4]), all clipped to the canvas.
    """
    clipped = _clip(boxes, width, height)
    full, visible = _areas(boxes), _areas(clipped)
    share = np.divide(visible, full, out=np.zeros_like(visible), where=full > 0)
    sides = np.minimum(clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1])
    keep = (share >= min_visible) & (sides >= min_side)
    if keep_cut_bottom > 0:
        keep |= (boxes[:, 1] >= 0) & (boxes[:, 3] > height) & (share >= keep_cut_bottom) & (sides >= min_side)
    to_ignore = (visible > 0) & ~keep
    old_ignore = _clip(ignore, width, height)
    old_ignore = old_ignore[_areas(old_ignore) > 0]
    return clipped[keep], labels[keep], np.concatenate([old_ignore, clipped[to_ignore]]).astype(np.float32)


def place(a: Annotated, scale: float, offset: tuple[float, float], canvas: tuple[int, int], *,
          fill: int = 114, min_visible: float = 0.6, min_side: float = 6.0, keep_cut_bottom: float = 0.0) -> Annotated:
    """``a`` scaled by ``scale``, shifted by ``offset`` = (tx, ty) px and cut to ``canvas`` = (W, H).

    A point (x, y) of the image (pixel-edge coordinates) lands at (s·x + tx, s·y + ty). Shrinking
    (s < 1) resizes with area averaging (no aliasing) and pastes at a whole-pixel offset (the offset is
    rounded, and the scale is the exact ratio of the integer sizes); enlarging warps with bilinear
    interpolation. Canvas areas the image does not cover are ``fill`` grey. Boxes follow the crop rules.
    """
    width, height = canvas
    h, w = a.image.shape[:2]
    if scale < 1.0:
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        small = cv2.resize(a.image, (nw, nh), interpolation=cv2.INTER_AREA)
        sx, sy = nw / w, nh / h
        tx, ty = round(offset[0]), round(offset[1])
        out = np.full((height, width, 3), fill, np.uint8)
        # the part of the shrunk image inside the canvas
        x0, y0 = max(0, tx), max(0, ty)
        x1, y1 = min(width, tx + nw), min(height, ty + nh)
        if x1 > x0 and y1 > y0:
            out[y0:y1, x0:x1] = small[y0 - ty:y1 - ty, x0 - tx:x1 - tx]
    else:
        sx = sy = float(scale)
        tx, ty = float(offset[0]), float(offset[1])
        # cv2 maps pixel *centres*: x' + ½ = s (x + ½) + t in edge coordinates
        matrix = np.array([[sx, 0.0, tx + 0.5 * (sx - 1.0)], [0.0, sy, ty + 0.5 * (sy - 1.0)]], np.float64)
        out = cv2.warpAffine(a.image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(fill, fill, fill))
    # the rules run on the boxes' indices, so the labels and their scores are kept alike
    boxes, kept, ignore = crop_rules(_move(a.boxes, sx, sy, tx, ty), np.arange(len(a.labels)),
                                     _move(a.ignore, sx, sy, tx, ty), width, height, min_visible, min_side, keep_cut_bottom)
    return Annotated(out, boxes, a.labels[kept], ignore, a.scores[kept])


def _offset(rng: np.random.Generator, scaled: float, window: int, focus: tuple[float, float] | None) -> float:
    """A random shift along one axis for an image ``scaled`` px long into a ``window`` px long canvas.

    An image longer than the window is cut (the window stays inside the image), and then, given a
    ``focus`` extent (a, b) of the scaled image, the window holds all of it if it fits, else lies
    within it. A shorter image lands anywhere inside the window.
    """
    if scaled < window:
        return float(rng.uniform(0.0, window - scaled))
    lo, hi = window - scaled, 0.0
    if focus is not None:
        a, b = np.clip(focus, 0.0, scaled)
        lo, hi = max(lo, min(-a, window - b)), min(hi, max(-a, window - b))
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


def _draw_scale(rng: np.random.Generator, scale_range: tuple[float, float]) -> float:
    lo, hi = scale_range
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else float(lo)


def _random_placement(a: Annotated, rng: np.random.Generator, scale: float, window: tuple[int, int],
                      cfg: AugmentConfig) -> Annotated:
    """``a`` at ``scale`` in a random position of ``window``; a zoom-in keeps a random labelled box in view."""
    focus = a.boxes[rng.integers(len(a.boxes))] * scale if len(a.boxes) else None
    h, w = a.image.shape[:2]
    tx = _offset(rng, w * scale, window[0], None if focus is None else (focus[0], focus[2]))
    ty = _offset(rng, h * scale, window[1], None if focus is None else (focus[1], focus[3]))
    if cfg.keep_cut_bottom and focus is not None and focus[3] - focus[1] > window[1] and rng.random() < 0.5:
        ty = float(np.clip(-focus[1] + rng.uniform(0.0, 0.05) * window[1], window[1] - h * scale, 0.0))  # its top
    return place(a, scale, (tx, ty), window, fill=cfg.fill, min_visible=cfg.min_visible, min_side=cfg.min_side,
                 keep_cut_bottom=cfg.keep_cut_bottom)


def _canvas(a: Annotated, base: float) -> tuple[int, int]:
    return max(1, round(a.size[0] * base)), max(1, round(a.size[1] * base))


def random_scale(a: Annotated, rng: np.random.Generator, cfg: AugmentConfig, base: float = 1.0) -> Annotated:
    """Zoom in or out by a factor drawn log-uniformly from ``cfg.scale_range``, on a canvas of ``a``'s size
    × ``base`` (a resize to the training size folded in, so that the image is resampled once)."""
    return _random_placement(a, rng, base * _draw_scale(rng, cfg.scale_range), _canvas(a, base), cfg)


def hflip(a: Annotated) -> Annotated:
    """The mirror image: x → W − x."""
    w = a.image.shape[1]

    def flip(b: np.ndarray) -> np.ndarray:
        return np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1).astype(np.float32)

    return Annotated(np.ascontiguousarray(a.image[:, ::-1]), flip(a.boxes), a.labels.copy(), flip(a.ignore),
                     a.scores.copy())


def color_jitter(a: Annotated, rng: np.random.Generator, cfg: AugmentConfig) -> Annotated:
    """Brightness, contrast and saturation factors, then a hue shift (boxes unchanged).

    On uint8 with OpenCV (a lookup table, a weighted sum): 5× faster than in float, which matters
    at ~10 images a second on 2 cores."""
    brightness = rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    contrast = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)
    saturation = rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
    gray = cv2.cvtColor(a.image, cv2.COLOR_RGB2GRAY)  # ITU-R 601 luma
    mean = brightness * float(gray.mean())
    # brightness, then contrast about the brightened mean grey: one affine map of each value
    lut = np.clip(np.arange(256, dtype=np.float32) * brightness * contrast + (1 - contrast) * mean, 0, 255)
    out = cv2.LUT(a.image, lut.astype(np.uint8))
    # saturation: away from (or towards) the pixel's own grey
    grey3 = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    out = cv2.addWeighted(out, saturation, grey3, 1 - saturation, 0)
    if cfg.hue > 0:
        shift = int(round(rng.uniform(-cfg.hue, cfg.hue) * 180))  # OpenCV's 8-bit hue runs 0..179
        if shift:
            hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
            hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
            out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return Annotated(out, a.boxes.copy(), a.labels.copy(), a.ignore.copy(), a.scores.copy())


def mosaic(items: Sequence[Annotated], rng: np.random.Generator, cfg: AugmentConfig, *, flip: bool = False,
           scale: bool = False, canvas: tuple[int, int] | None = None, resize: Resize | None = None) -> Annotated:
    """Four images in the 2×2 quadrants around a random centre of ``canvas`` (default: the first image's
    size × its ``resize`` factor).

    The centre is drawn from the middle half of each axis. Each image keeps its own object scale — its
    ``resize(height, width)`` factor (default 1), × a draw of ``cfg.scale_range`` when ``scale``;
    mirrored at random when ``flip`` — and shows a random window of itself, around one of its labelled
    boxes when it is larger than its quadrant: the mosaic changes the context and the crop edges, not
    the size of the objects.
    """
    if len(items) != 4:
        raise ValueError(f"a mosaic needs 4 images; got {len(items)}")
    resize = resize or _unit
    width, height = canvas or _canvas(items[0], resize(*items[0].image.shape[:2]))
    cx = int(round(rng.uniform(0.25, 0.75) * width))
    cy = int(round(rng.uniform(0.25, 0.75) * height))
    quadrants = ((0, 0, cx, cy), (cx, 0, width, cy), (0, cy, cx, height), (cx, cy, width, height))
    out = np.full((height, width, 3), cfg.fill, np.uint8)
    boxes, labels, ignore, scores = [], [], [], []
    for item, (x0, y0, x1, y1) in zip(items, quadrants, strict=True):
        s = resize(*item.image.shape[:2]) * (_draw_scale(rng, cfg.scale_range) if scale else 1.0)
        # a box cut by a top tile's bottom edge ends inside the picture: a part, not a person cut by the frame
        tile = _random_placement(item, rng, s, (x1 - x0, y1 - y0),
                                 cfg if y1 == height or not cfg.keep_cut_bottom else replace(cfg, keep_cut_bottom=0.0))
        # mirroring the placed tile (its offset was random) costs less than mirroring the source image
        if flip and rng.random() < 0.5:
            tile = hflip(tile)
        out[y0:y1, x0:x1] = tile.image
        boxes.append(_move(tile.boxes, 1, 1, x0, y0))
        labels.append(tile.labels)
        ignore.append(_move(tile.ignore, 1, 1, x0, y0))
        scores.append(tile.scores)
    return Annotated(out, np.concatenate(boxes), np.concatenate(labels), np.concatenate(ignore), np.concatenate(scores))


class Augmenter:
    """The augmentation of one training sample under ``config``.

    ``augmenter(sample, rng, more, resize)``: with probability ``mosaic_prob`` (when "mosaic" is on) a
    mosaic of ``sample`` and three more drawn by ``more()``; otherwise a zoom and a flip (p = ½). Colour
    jitter last. ``resize(height, width)`` is the factor that takes an image to the training size: the
    output is drawn at that size directly (one resampling, and the augmentation works on the small
    image — a 1080p frame costs what a 576p one does); default 1 (the sample's own size).
    """

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config

    @property
    def active(self) -> bool:
        return bool(self.config.ops)

    def __call__(self, sample: Annotated, rng: np.random.Generator, more: Callable[[], Annotated] | None = None,
                 resize: Resize | None = None) -> Annotated:
        cfg, ops = self.config, self.config.ops
        resize = resize or _unit
        if "mosaic" in ops and more is not None and rng.random() < cfg.mosaic_prob:
            out = mosaic([sample, more(), more(), more()], rng, cfg, flip="flip" in ops, scale="scale" in ops,
                         resize=resize)
        else:
            base = resize(*sample.image.shape[:2])
            if "scale" in ops:
                out = random_scale(sample, rng, cfg, base)
            elif base != 1.0:
                out = place(sample, base, (0.0, 0.0), _canvas(sample, base), fill=cfg.fill,
                            min_visible=cfg.min_visible, min_side=cfg.min_side)
            else:
                out = sample
            if "flip" in ops and rng.random() < 0.5:
                out = hflip(out)
        if "color" in ops:
            out = color_jitter(out, rng, cfg)
        return out
