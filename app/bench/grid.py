"""The scale × proposals grid: which settings are worth having (the Pareto front of fps and AP50),
and a plot of the trade the adaptive controller (``app.pipeline.adapt``) makes.

A setting is on the front when no other setting of the same model and precision is at least as
fast *and* at least as accurate, and strictly better in one of the two. Detector fps (frames in
memory, batch 1) is the speed used: it is what the input size and the proposal count change.
Accuracy is AP50 weighted by each class's labelled boxes (``ap50_boxes``, see ``app.bench.profile``)
when the rows have it, else COCO's class-mean AP50.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

PLOT_NAME = "scale_vs_proposals.png"


def _key(row: dict) -> tuple:
    return row.get("model"), row.get("weights"), row.get("precision")


def _ok(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def mark_pareto(rows: Sequence[dict]) -> None:
    """Set ``row["pareto"]`` True/False for rows with both detector fps and accuracy (None for the
    others), per model × weights × precision."""
    accuracy = _accuracy_key(rows)
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        row["pareto"] = None
        if _ok(row.get("detector_fps")) and _ok(row.get(accuracy)):
            groups.setdefault(_key(row), []).append(row)
    for group in groups.values():
        for row in group:
            fps, ap = row["detector_fps"], row[accuracy]
            row["pareto"] = not any(o is not row and o["detector_fps"] >= fps and o[accuracy] >= ap
                                    and (o["detector_fps"] > fps or o[accuracy] > ap) for o in group)


def _accuracy_key(rows: Sequence[dict]) -> str:
    return "ap50_boxes" if any(_ok(r.get("ap50_boxes")) for r in rows) else "ap50"


def plot(path: Path, rows: Sequence[dict], title: str) -> None:
    """AP50 against detector fps for every scale × proposals cell (one marker per proposal count,
    one colour per input size), the Pareto front as a line, the 30 / 60 fps targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import weights_tags

    cells = [r for r in rows if _ok(r.get("detector_fps"))]
    key = _accuracy_key(cells)
    has_ap = any(_ok(r.get(key)) for r in cells)
    fig, ax = plt.subplots(figsize=(10, 6.5))
    cmap = plt.get_cmap("viridis")
    scales = sorted({r.get("input_size") for r in cells if r.get("input_size")})
    colours = {s: cmap(i / max(1, len(scales) - 1)) for i, s in enumerate(scales)}
    shapes = "os^Dv<>P*X"
    markers = {p: shapes[j % len(shapes)] for j, p in enumerate(sorted({r["proposals"] for r in cells}))}
    for row in cells:
        if has_ap and not _ok(row.get(key)):
            continue  # not measured: no place on the AP axis (its ms would be read as AP)
        y = row[key] if has_ap else row.get("total_ms_median")
        ax.scatter(row["detector_fps"], y, color=colours.get(row.get("input_size"), cmap(0)),
                   marker=markers[row["proposals"]], s=60, linewidths=1.2, zorder=3,
                   edgecolors="black" if row.get("pareto") else "none")
    groups: dict[tuple, list[dict]] = {}
    for row in cells:
        if row.get("pareto"):
            groups.setdefault(_key(row), []).append(row)
    tags = weights_tags(cells)  # two weights files of a model: two fronts, each named by its file
    for (model, weights, precision), front in groups.items():
        front = sorted(front, key=lambda r: r["detector_fps"])
        ax.plot([r["detector_fps"] for r in front], [r[key] for r in front], "-", color="0.25", linewidth=1.2,
                zorder=2, label=f"Pareto front ({model}{tags[model, weights]} {precision})")
        for r in front:
            ax.annotate(f"{r['input_size']}px/{r['proposals']}", (r["detector_fps"], r[key]), xytext=(4, 4),
                        textcoords="offset points", fontsize=7, color="0.2")
    for target, style in ((30, "--"), (60, "-.")):
        ax.axvline(target, color="0.5", linestyle=style, linewidth=1)
        ax.annotate(f"{target} fps", xy=(target, 0.02), xycoords=("data", "axes fraction"), xytext=(3, 0),
                    textcoords="offset points", fontsize=8, color="0.35")
    for s, colour in colours.items():
        ax.scatter([], [], color=colour, marker="o", label=f"{s} px short side")
    for p, marker in markers.items():
        ax.scatter([], [], color="0.6", marker=marker, label=f"{p} proposals")
    ax.set_xscale("log")
    ax.set_xlabel("detector fps (batch 1, frames in memory; log)")
    label = "AP50, weighted by labelled boxes per class" if key == "ap50_boxes" else "AP50 (COCO, class mean)"
    ax.set_ylabel(label if has_ap else "ms per frame (no labels: AP not measured)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title(title + "\ninput size × proposals: black-edged = on the Pareto front", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
