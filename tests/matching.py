"""Comparing the detections of two compute paths (fp32 vs channels_last or int8, batched vs single,
serve vs local, TF.js vs its reference) — by matching, never by row order.

Two paths that compute "the same" floats in another order give boxes equal to ~1e-5 px and scores
equal to ~1e-6; two detections of near-equal score then swap rows, and a row-by-row comparison
fails on one CPU and passes on another. So every detection is paired with one of the other set:
the same class, IoU ≥ ``iou``, scores within ``score_atol`` (one-to-one, best IoU first). A
detection may go unpaired only when its score lies within ``score_atol`` of ``floor`` — the score
threshold or the count cut-off (``capped``), where an equal-within-tolerance box may fall on either side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_iou

from detector.detections import Detections


@dataclass
class Matching:
    """The pairs (index in a, index in b, IoU) and what stayed unpaired in each set."""

    pairs: list[tuple[int, int, float]] = field(default_factory=list)
    only_a: list[int] = field(default_factory=list)
    only_b: list[int] = field(default_factory=list)

    @property
    def ious(self) -> np.ndarray:
        return np.array([p[2] for p in self.pairs], dtype=float)


def match(a: Detections, b: Detections, *, iou: float = 0.5, score_atol: float = 1.0) -> Matching:
    """Pair ``a``'s detections with ``b``'s one-to-one: same class, IoU ≥ ``iou``, |Δscore| ≤
    ``score_atol``; among those, the assignment with the highest summed IoU (Hungarian)."""
    out = Matching()
    used_a, used_b = set(), set()
    # classes compared by name: an export keeps the name only, and a label map may repeat one ("N/A")
    la, lb = np.array(a.labels, dtype=object), np.array(b.labels, dtype=object)
    for cls in set(la.tolist()) | set(lb.tolist()):
        ia, ib = np.flatnonzero(la == cls), np.flatnonzero(lb == cls)
        if len(ia) and len(ib):
            m = box_iou(torch.from_numpy(np.asarray(a.boxes[ia], np.float64)),
                        torch.from_numpy(np.asarray(b.boxes[ib], np.float64))).numpy()
            close = np.abs(a.scores[ia][:, None].astype(float) - b.scores[ib][None, :].astype(float)) <= score_atol
            allowed = (m >= iou) & close
            rows, cols = linear_sum_assignment(np.where(allowed, -m, 1.0))
            for r, c in zip(rows, cols, strict=True):
                if allowed[r, c]:
                    out.pairs.append((int(ia[r]), int(ib[c]), float(m[r, c])))
                    used_a.add(int(ia[r]))
                    used_b.add(int(ib[c]))
    out.only_a = [i for i in range(len(a)) if i not in used_a]
    out.only_b = [i for i in range(len(b)) if i not in used_b]
    return out


def assert_same_detections(a: Detections, b: Detections, *, iou: float = 0.99, score_atol: float = 1e-3,
                           floor: float = 0.0, capped: bool = False, what: str = "") -> Matching:
    """Fail unless ``a`` and ``b`` hold the same detections up to tolerances (see the module).

    Args:
        iou: the IoU a pair must reach (0.99 for float paths: a 1-px shift on a 100-px box is 0.98).
        score_atol: the largest score difference of a pair, and the band above ``floor`` in which
            a detection may go unpaired.
        floor: the score below which detections were cut (the score threshold).
        capped: the sets were also cut to a count (``detections_per_image``): the lower of their
            lowest scores is a cut-off too.
    """
    m = match(a, b, iou=iou, score_atol=score_atol)
    lows = [float(d.scores.min()) for d in (a, b) if len(d)]
    edge = max(floor, min(lows)) if capped and lows else floor
    bad_a = [i for i in m.only_a if a.scores[i] > edge + score_atol]
    bad_b = [i for i in m.only_b if b.scores[i] > edge + score_atol]
    if bad_a or bad_b:
        def show(d: Detections, idx: list[int]) -> str:
            return "; ".join(f"{d.class_names[d.class_ids[i]] if d.class_names else d.class_ids[i]} "
                             f"{d.scores[i]:.4f} {np.round(d.boxes[i], 2).tolist()}" for i in idx[:5])

        raise AssertionError(f"{what or 'detections'} differ: {len(a)} vs {len(b)} detections, {len(m.pairs)} paired "
                             f"(IoU ≥ {iou}, |Δscore| ≤ {score_atol}); only in the first: {show(a, bad_a) or '-'}; "
                             f"only in the second: {show(b, bad_b) or '-'}")
    return m


def detections_from_rows(rows: list[dict], class_names) -> Detections:
    """``Detections`` from exported rows (x1, y1, x2, y2, score, class) — serve's and the CLI's exports."""
    index = {}
    for i, n in enumerate(class_names):
        index.setdefault(n, i)
    boxes = np.array([[r["x1"], r["y1"], r["x2"], r["y2"]] for r in rows], dtype=np.float32).reshape(-1, 4)
    scores = np.array([r["score"] for r in rows], dtype=np.float32)
    ids = np.array([int(r["class_id"]) if "class_id" in r else index[r["class"]] for r in rows], dtype=np.int64)
    return Detections(boxes, scores, ids, tuple(class_names))
