"""Training data: COCO-format datasets read into boxes, labels and ignore regions, and a weighted mix of them.

A dataset's ``iscrowd=1`` annotations (the autolabeller's uncertain teacher boxes) are kept as ignore
regions, not dropped: the samplers neither reward nor punish anything on them (``detector.ignore``).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

from detector.augment import Annotated
from detector.boxes import pairwise_ioa
from detector.evaluate import coco_xyxy, load_coco


@dataclass
class Sample:
    """One image and its boxes: ``boxes`` float32 [N, 4] xyxy pixels; ``labels`` int64 [N] indices into
    the model's class names (1..K); ``ignore`` float32 [M, 4] xyxy pixels (crowd / uncertain regions);
    ``scores`` float32 [N], each label's ``score`` in the file (an autolabeller's confidence; 1 without)."""

    image_id: int
    path: Path
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray | None = None


def category_names(json_paths: Sequence[str | Path]) -> tuple[str, ...]:
    """("__background__", every category name of the JSONs): the first JSON's in id order, then names
    that only later ones have. The label map of a model trained on all of them."""
    names: list[str] = []
    for path in json_paths:
        coco = load_coco(path)
        for c in sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"]):
            if c["name"] not in names:
                names.append(c["name"])
    return ("__background__", *names)


class CocoDetectionData:
    """A COCO-format dataset read for training: the boxes of the classes in ``class_names``.

    Args:
        json_path: the COCO JSON; ``file_name`` is relative to the JSON's folder (or absolute).
        class_names: the model's label map (index 0 background). None = ("__background__", the
            JSON's categories in id order). Annotations of other classes are left out (learnt as
            background, as any unlabelled object is).
        part_ignore: drop an ignore region with at least this share of its area inside a label of its
            own class (a teacher's uncertain box on a head or torso of a labelled person): it would keep
            those parts from ever being negatives. None = keep every ignore region.
        label_score: a label whose ``score`` (an autolabeller's confidence) is below this becomes an
            ignore region: neither learnt as the object nor as background. None = every label is one.
        still_share: in a clip's frames (pictures named ``<clip>_<frame number>.jpg``, six digits or
            more, as ``make model`` exports a video's frames), drop every box of a class that moves
            (``MOVING``: animals, balls, kites) found at one place in at least this share of the clip's
            frames, label or ignore region: a fixed camera's still thing the teacher misnamed (a paper
            bag as "bird" in 131 of 150 frames). It is then learnt as background. None = keep them.
    """

    def __init__(self, json_path: str | Path, class_names: Sequence[str] | None = None,
                 part_ignore: float | None = None, label_score: float | None = None,
                 still_share: float | None = None) -> None:
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
        still = still_annotations(self.coco, still_share) if still_share is not None else set()
        self.dropped_still = len(still)
        for image_id in sorted(self.coco.imgs):
            info = self.coco.imgs[image_id]
            anns = [a for a in self.coco.imgToAnns.get(image_id, [])
                    if a["category_id"] in cat_to_label and a["bbox"][2] >= 1 and a["bbox"][3] >= 1 and a["id"] not in still]
            labelled = [a for a in anns if not a.get("iscrowd", 0)]
            crowd = [a for a in anns if a.get("iscrowd", 0)]
            if label_score is not None:
                crowd += [a for a in labelled if a.get("score", 1.0) < label_score]
                labelled = [a for a in labelled if a.get("score", 1.0) >= label_score]
            if part_ignore is not None:
                crowd = [a for a in crowd if _inside_own_class(a, labelled) < part_ignore]
            labels = np.array([cat_to_label[a["category_id"]] for a in labelled], np.int64)
            path = Path(info["file_name"])
            scores = np.array([a.get("score", 1.0) for a in labelled], np.float32)
            path = path if path.is_absolute() else root / path
            self.samples.append(Sample(image_id, path, coco_xyxy(labelled), labels, coco_xyxy(crowd), scores))
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

    def annotated(self, i: int) -> Annotated:
        """Sample ``i`` with its image, for augmentation."""
        s = self.samples[i]
        return Annotated(self.image(i), s.boxes.copy(), s.labels.copy(), s.ignore.copy(),
                         None if s.scores is None else s.scores.copy())


# COCO's animals and the things that fly or roll: none of them stands at one place through a street clip
MOVING = frozenset({"bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
                    "sports ball", "frisbee", "kite"})
STILL_IOU = 0.5


def clip_of(file_name: str) -> str | None:
    """The clip a video frame's picture belongs to: its file name less the frame number
    (``vtest_000120.jpg`` → ``vtest``); None for a picture not named as a frame (``anna-2.jpg``: a
    series of photos, not a fixed camera)."""
    match = re.fullmatch(r"(.+)_\d{6,}", Path(file_name).stem)
    return match.group(1) if match else None


def still_annotations(coco, share: float) -> set[int]:
    """The ids of the ``MOVING`` classes' annotations (labels and ignore regions) of video frames that
    overlap (IoU ≥ ``STILL_IOU``) such an annotation in at least ``share`` of their clip's frames."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"still share {share!r} must be in (0, 1]")
    moving = {c["id"] for c in coco.loadCats(coco.getCatIds()) if c["name"] in MOVING}
    clips: dict[str, list[int]] = defaultdict(list)
    for image_id, info in coco.imgs.items():
        if (clip := clip_of(info["file_name"])) is not None:
            clips[clip].append(image_id)
    still: set[int] = set()
    for frames in clips.values():
        anns = [a for i in frames for a in coco.imgToAnns.get(i, []) if a["category_id"] in moving]
        if len(frames) < 2 or not anns:
            continue
        overlap = box_iou(torch.as_tensor(coco_xyxy(anns), dtype=torch.float64),
                          torch.as_tensor(coco_xyxy(anns), dtype=torch.float64)) >= STILL_IOU
        frame_of = torch.as_tensor([a["image_id"] for a in anns])
        for k, a in enumerate(anns):
            if len(set(frame_of[overlap[k]].tolist())) >= max(2, share * len(frames)):  # itself and another at least
                still.add(a["id"])
    return still


def _inside_own_class(region: dict, labelled: Sequence[dict]) -> float:
    """The largest share of ``region``'s area inside one annotation of ``labelled`` of its category."""
    own = [a for a in labelled if a["category_id"] == region["category_id"]]
    if not own:
        return 0.0
    return float(pairwise_ioa(torch.as_tensor(coco_xyxy([region]), dtype=torch.float64),
                              torch.as_tensor(coco_xyxy(own), dtype=torch.float64)).max())


class WeightedMix:
    """Draws (dataset index, sample index) from several datasets in proportion to their weights.

    Each dataset is gone through in its own shuffled order (reshuffled when used up), so within a
    dataset every image comes once before any comes twice; which dataset serves a draw is random with
    probability weight / Σ weights. ``len`` is the total number of images (one "epoch").
    """

    def __init__(self, sets: Sequence[tuple[CocoDetectionData, float]], rng: random.Random) -> None:
        if not sets:
            raise ValueError("no training data")
        for data, weight in sets:
            if not weight > 0:
                raise ValueError(f"weight {weight!r} of {data.json_path} must be > 0")
            if data.class_names != sets[0][0].class_names:
                raise ValueError(f"{data.json_path} has class names {data.class_names[1:]}, "
                                 f"{sets[0][0].json_path} has {sets[0][0].class_names[1:]}: read both with one list")
        self.sets = [data for data, _ in sets]
        self.weights = [float(w) for _, w in sets]
        self.rng = rng
        self.orders: list[list[int]] = [[] for _ in self.sets]

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.sets[0].class_names

    def __len__(self) -> int:
        return sum(len(d) for d in self.sets)

    def draw(self) -> tuple[int, int]:
        d = 0 if len(self.sets) == 1 else self.rng.choices(range(len(self.sets)), weights=self.weights)[0]
        if not self.orders[d]:
            self.orders[d] = list(range(len(self.sets[d])))
            self.rng.shuffle(self.orders[d])
        return d, self.orders[d].pop()
