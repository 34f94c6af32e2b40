"""The int8 accuracy gate: int8 may be the automatic choice only for a model whose AP50 on labelled
frames stays within 0.01 of fp32's (``detector.probe.INT8_AP50_TOLERANCE``).

The benchmark measures both precisions on the same frames; this turns its rows into the verdict and
writes it where ``detector.probe`` looks (the user's cache, and ``--gate-file`` — e.g.
``assets/int8_gate.json`` to ship the verdict of the bundled model).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from detector.probe import INT8_AP50_TOLERANCE, record_gate


def int8_gate(rows: Sequence[dict], identity: str, labels: str, files: Sequence[Path | None] = (None,)) -> dict | None:
    """Compare the fp32 and int8 rows of one model (same frames, same proposal counts).

    Returns the verdict written (the worst proposal count decides), or None when the rows lack
    either precision or AP. ``files``: gate files to write (None = the user's cache)."""
    by = {(r["precision"], r["proposals"]): r for r in rows if r.get("ap50") is not None}
    pairs = [(by[("fp32", p)], by[("int8", p)]) for (prec, p) in by if prec == "fp32" and ("int8", p) in by]
    if not pairs:
        return None
    fp32, int8 = min(pairs, key=lambda pair: pair[1]["ap50"] - pair[0]["ap50"])
    where = f"{labels}, {fp32['proposals']} proposals, {fp32.get('ap_images')} frames"
    record = None
    for path in files:
        record = record_gate(identity, fp32["ap50"], int8["ap50"], where, path)
    record = dict(record or {})
    record["tolerance"] = INT8_AP50_TOLERANCE
    record["delta"] = round(int8["ap50"] - fp32["ap50"], 4)
    return record
