"""The one detections type that flows from the detector to every consumer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Detections of one image.

    Attributes:
        boxes: float32 [N, 4] in (x1, y1, x2, y2), absolute pixels of the original frame.
        scores: float32 [N] in [0, 1].
        class_ids: int64 [N], indices into ``class_names``.
        class_names: the model's full label map (index → name); index 0 is the background.
        track_ids: int64 [N], the identity a tracker gave each detection (-1: not tracked yet, e.g.
            a track's first frame), or None when no tracker ran. A detector never sets it.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: tuple[str, ...]
    track_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        if np.size(self.boxes) and (np.ndim(self.boxes) != 2 or np.shape(self.boxes)[1] != 4):
            raise ValueError(f"boxes must have shape [N, 4]; got {np.shape(self.boxes)}")
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        class_ids = np.asarray(self.class_ids)
        if np.issubdtype(class_ids.dtype, np.floating) and not np.all(np.mod(class_ids, 1) == 0):
            bad = class_ids[np.mod(class_ids, 1) != 0].flat[0]
            raise ValueError(f"class ids must be whole numbers; got {bad:g}")
        class_ids = class_ids.astype(np.int64).reshape(-1)
        if not (len(boxes) == len(scores) == len(class_ids)):
            raise ValueError(
                f"boxes, scores and class_ids must have the same length; got {len(boxes)}, {len(scores)}, {len(class_ids)}"
            )
        if len(class_ids) and (class_ids.min() < 0 or class_ids.max() >= len(self.class_names)):
            bad = int(class_ids[(class_ids < 0) | (class_ids >= len(self.class_names))][0])
            raise ValueError(f"class id {bad} is outside the label map of {len(self.class_names)} names")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", class_ids)
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.track_ids is not None:
            track_ids = np.asarray(self.track_ids)
            if track_ids.size and not np.issubdtype(track_ids.dtype, np.integer):
                raise ValueError(f"track_ids must be integers; got dtype {track_ids.dtype}")
            track_ids = track_ids.astype(np.int64).reshape(-1)
            if len(track_ids) != len(scores):
                raise ValueError(f"track_ids must have one entry per detection; got {len(track_ids)} for {len(scores)}")
            if len(track_ids) and track_ids.min() < -1:
                raise ValueError(f"track id {int(track_ids.min())} is invalid; ids are ≥ 0, or -1 for 'not tracked yet'")
            object.__setattr__(self, "track_ids", track_ids)

    @classmethod
    def empty(cls, class_names: Sequence[str]) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), tuple(class_names))

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def labels(self) -> list[str]:
        """The class name of every detection."""
        return [self.class_names[i] for i in self.class_ids]

    def __getitem__(self, index) -> Detections:
        """Select detections by a boolean mask, an index array or a slice."""
        if isinstance(index, (int, np.integer)):
            index = [index]
        track_ids = None if self.track_ids is None else self.track_ids[index]
        return Detections(self.boxes[index], self.scores[index], self.class_ids[index], self.class_names, track_ids)

    def with_track_ids(self, track_ids: np.ndarray | Sequence[int] | None) -> Detections:
        """The same detections, in the same order, with ``track_ids`` (int [N], -1 = untracked)."""
        return Detections(self.boxes, self.scores, self.class_ids, self.class_names, track_ids)

    def filter(self, min_score: float = 0.0, classes: Sequence[str] | None = None) -> Detections:
        """Keep detections scoring at least ``min_score`` and (if given) whose class is in ``classes``."""
        keep = self.scores >= min_score
        if classes:
            unknown = sorted(set(classes) - set(self.class_names))
            if unknown:
                raise ValueError(f"unknown class names {unknown}; valid names: {', '.join(valid_names(self.class_names))}")
            wanted = np.array([name in set(classes) for name in self.class_names], dtype=bool)
            keep &= wanted[self.class_ids]
        return self[keep]

    def to_rows(self) -> list[dict]:
        """JSON-ready rows: one dict per detection; ``track_id`` is -1 when no tracker ran."""
        track_ids = self.track_ids if self.track_ids is not None else np.full(len(self), -1, np.int64)
        return [
            {
                "class": self.class_names[int(c)],
                "class_id": int(c),
                "score": round(float(s), 5),
                "x1": round(float(b[0]), 2),
                "y1": round(float(b[1]), 2),
                "x2": round(float(b[2]), 2),
                "y2": round(float(b[3]), 2),
                "track_id": int(t),
            }
            for b, s, c, t in zip(self.boxes, self.scores, self.class_ids, track_ids, strict=True)
        ]


def valid_names(class_names: Sequence[str]) -> list[str]:
    """The real class names of a label map (no background, no torchvision 'N/A' gaps)."""
    return [n for i, n in enumerate(class_names) if i > 0 and n not in ("N/A", "__background__")]
