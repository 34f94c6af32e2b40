"""What the benchmark leaves behind for run time: the model's profile (``detector.profiles``).

* ``int8``: the fp32 and int8 rows of one model (same frames, same proposal counts) give the int8
  verdict — the worst proposal count decides. ``--precision auto`` picks int8 only when it passed.
* ``accuracy``: a scale × proposals grid (``--scales``) gives AP50 per cell, which the adaptive
  controller ranks its settings by. The AP50 is weighted by each class's labelled boxes: COCO's
  AP50 is a mean over classes, and on the sample clip's held-out labels (580 person, 80 car, 80
  truck boxes) the one parked car cut by the frame edge — found at 416 and 576 px, missed at
  480 px — moved the class mean between 0.66 and 0.98 while the person AP50 moved by 0.01.

Written to the user's cache, and to ``--profile-file`` (e.g. ``assets/model_profiles.json``, which
ships the bundled model's profile).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from detector.profiles import int8_key, int8_record, record_profile


def box_weighted_ap50(row: dict, boxes_per_class: dict[str, int]) -> float | None:
    """AP50 averaged over classes weighted by their labelled boxes (≈ AP50 over all boxes)."""
    per_class = row.get("per_class_ap50") or {}
    pairs = [(ap, boxes_per_class.get(name, 0)) for name, ap in per_class.items() if ap is not None and ap >= 0]
    total = sum(n for _, n in pairs)
    return sum(ap * n for ap, n in pairs) / total if total else row.get("ap50")


def boxes_per_class(labels) -> dict[str, int]:
    names = {c["id"]: c["name"] for c in labels.dataset["categories"]}
    return dict(Counter(names.get(a["category_id"], "?") for a in labels.dataset["annotations"] if not a.get("iscrowd", 0)))


def int8_profile(rows: Sequence[dict], labels_name: str, float_layers: Sequence[str] = ()) -> dict | None:
    by = {(r["precision"], r.get("input_size"), r["proposals"]): r for r in rows if r.get("ap50") is not None}
    pairs = [(r, by[("int8", s, p)]) for (prec, s, p), r in by.items() if prec == "fp32" and ("int8", s, p) in by]
    if not pairs:
        return None
    fp32, int8 = min(pairs, key=lambda pair: pair[1]["ap50"] - pair[0]["ap50"])
    one_size = len({f.get("input_size") for f, _ in pairs}) == 1  # else the worst cell's proposals are named
    by_proposals = {int(f["proposals"]): (f["ap50"], i["ap50"]) for f, i in pairs} if one_size else None
    named = "" if one_size else f"{fp32['proposals']} proposals, "
    where = f"{labels_name}, {fp32.get('input_size')} px, {named}{fp32.get('ap_images')} frames"
    return int8_record(fp32["ap50"], int8["ap50"], where, by_proposals=by_proposals, float_layers=float_layers)


def accuracy_profile(rows: Sequence[dict], labels, labels_name: str) -> dict | None:
    """AP50 (box-weighted) per input size × proposal count, of the most accurate precision measured."""
    counts = boxes_per_class(labels)
    cells: dict[tuple[int, int], float] = {}
    for r in rows:
        if r.get("ap50") is None or r.get("input_size") is None:
            continue
        value = r.get("ap50_boxes") if r.get("ap50_boxes") is not None else box_weighted_ap50(r, counts)
        key = (int(r["input_size"]), int(r["proposals"]))
        cells[key] = max(cells.get(key, -1.0), value)
    scales = sorted({s for s, _ in cells})
    proposals = sorted({p for _, p in cells})
    if len(scales) < 2 or len(cells) != len(scales) * len(proposals):
        return None  # a grid needs two sizes at least, and every cell of it
    return {"metric": "AP50 weighted by labelled boxes per class", "labels": labels_name,
            "scales": scales, "proposals": proposals,
            "ap50": [[round(cells[(s, p)], 4) for p in proposals] for s in scales]}


def write_profile(identity: str, records: dict[str, dict], files: Sequence[Path | None] = (None,)) -> None:
    """Write ``records`` into the model's profile; an "int8" record goes under its scheme's key
    (``int8_key``), beside the verdicts of the other schemes."""
    for key, value in records.items():
        if key == "int8":
            key = int8_key(value["scheme"])
        for path in files:
            record_profile(identity, key, value, path)
