"""What the benchmark writes: the terminal table, ``results.csv``, ``results.json`` and
``proposals_vs_fps.png``; and the description of the machine it ran on."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path

from detector.detector import STAGES
from detector.machine import cpu_name

OUTPUT_NAMES = ("results.csv", "results.json", "proposals_vs_fps.png")
TARGET_FPS = (30, 60)

# One row per model × precision × proposal count. Times in ms per frame (batch 1); fps in frames/s.
COLUMNS: tuple[str, ...] = (
    "model", "weights", "trained", "device", "precision", "input_size", "proposals", "proposals_kept_mean", "frames",
    "detector_fps", "total_ms_median", "total_ms_p90",
    *(f"{stage}_ms_{stat}" for stage in STAGES for stat in ("median", "p90")),
    "track_ms_median", "track_ms_p90",  # the tracker (--track) on the row's detections, its own stage
    "detections_mean", "pipeline_fps", "pipeline_frames", "baseline_fps", "speedup_vs_baseline",
    "ap", "ap50", "ap50_boxes", "ap_images", "pareto", "peak_rss_mb", "gpu_peak_mb",
)


def machine_info() -> dict:
    """CPU, cores, GPU, library versions and the date (UTC): written into results.json."""
    import av
    import numpy
    import torch
    import torchvision

    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
               "count": torch.cuda.device_count(), "cuda": torch.version.cuda,
               "cudnn": torch.backends.cudnn.version()}
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "GLIBC_TUNABLES") if k in os.environ},
        "gpu": gpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pyav": av.__version__,
        "numpy": numpy.__version__,
        "load_average_at_start": _loadavg(),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --------------------------------------------------------------------------------- files
def write_csv(path: Path, rows: Sequence[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: _csv_value(row.get(k)) for k in COLUMNS} for row in rows)


def _csv_value(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value else round(value, 3)
    return value


def write_json(path: Path, document: dict) -> None:
    path.write_text(json.dumps(_json_safe(document), indent=2, allow_nan=False) + "\n")


def _json_safe(value):
    """NaN and inf are not JSON: they become null."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# --------------------------------------------------------------------------------- terminal
TABLE = (
    ("model", "model", "{}"), ("prec", "precision", "{}"), ("px", "input_size", "{}"), ("props", "proposals", "{}"),
    ("det fps", "detector_fps", "{:.2f}"), ("ms med", "total_ms_median", "{:.1f}"), ("ms p90", "total_ms_p90", "{:.1f}"),
    ("pre", "preprocess_ms_median", "{:.1f}"), ("backbone", "backbone_ms_median", "{:.1f}"),
    ("rpn", "rpn_ms_median", "{:.1f}"), ("roi", "roi_heads_ms_median", "{:.1f}"), ("post", "postprocess_ms_median", "{:.1f}"),
    ("track", "track_ms_median", "{:.2f}"),
    ("e2e fps", "pipeline_fps", "{:.2f}"), ("naive", "baseline_fps", "{:.2f}"), ("×naive", "speedup_vs_baseline", "{:.2f}"),
    ("AP", "ap", "{:.3f}"), ("AP50", "ap50", "{:.3f}"), ("AP50 box", "ap50_boxes", "{:.3f}"), ("front", "pareto", "{}"), ("RSS MB", "peak_rss_mb", "{:.0f}"),
)


def format_table(rows: Sequence[dict]) -> str:
    """The results as an aligned text table (ms are medians per frame; empty cells were not measured)."""
    gpu = any(row.get("gpu_peak_mb") is not None for row in rows)
    table = TABLE + ((("GPU MB", "gpu_peak_mb", "{:.0f}"),) if gpu else ())
    tags = weights_tags(rows)
    cells = [[title for title, _, _ in table],
             *([_cell(row.get(key), fmt) + (tags[row["model"], row.get("weights")] if key == "model" else "")
                for _, key, fmt in table] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))) for line in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "◆" if value else ""
    return fmt.format(value)


# --------------------------------------------------------------------------------- plot
def lines(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """The plot's lines: one per model × weights × precision × input size, named by what tells them
    apart (the weights and the input size only where they vary), each sorted by proposal count."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = row["model"], row.get("weights"), row["precision"], row.get("input_size")
        groups.setdefault(key, []).append(row)
    tags = weights_tags(rows)
    many_sizes = len({size for *_, size in groups}) > 1
    named = {}
    for (model, weight, precision, size), group in groups.items():
        name = model.removeprefix("fasterrcnn_") + tags[model, weight]
        name += f" {precision}" + (f" {size}px" if many_sizes else "")
        name += "" if group[0].get("trained") else " (random weights)"
        named[name] = sorted(group, key=lambda r: r["proposals"])
    return named


def weights_tags(rows: Sequence[dict]) -> dict[tuple, str]:
    """What tells each (model, weights) of ``rows`` apart from the model's other weights (in the table,
    the plot and results.json): "" when it has one, else "[stem]" of the file — or "[its path]" where
    two stems are the same (a/best.pt, b/best.pt)."""
    weights = {(row["model"], row.get("weights")) for row in rows}
    tags = {}
    for model, weight in weights:
        stems = [Path(str(w)).stem for m, w in weights if m == model]
        unique = len(set(stems)) == len(stems)
        tags[model, weight] = "" if len(stems) == 1 else f"[{Path(str(weight)).stem if unique else weight}]"
    return tags


def plot(path: Path, rows: Sequence[dict], title: str) -> None:
    """fps (detector and end to end) and AP / AP50 against the proposal count, log x, with the 30
    and 60 fps targets; the naive loop of each model is a dotted horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator, ScalarFormatter

    has_ap = any(row.get("ap") is not None for row in rows)
    fig, (ax_fps, ax_ap) = plt.subplots(2, 1, figsize=(11, 8.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    baselines: set[tuple] = set()
    all_fps: list[float] = []
    for i, (name, group) in enumerate(lines(rows).items()):
        color = colors[i % len(colors)]
        x = [r["proposals"] for r in group]
        model = group[0]["model"], group[0].get("weights")
        short = name.split(" ")[0]
        det = [_nan(r.get("detector_fps")) for r in group]
        ax_fps.plot(x, det, "o-", color=color, label=f"{name}: detector")
        all_fps += det
        e2e = [_nan(r.get("pipeline_fps")) for r in group]
        if not all(math.isnan(v) for v in e2e):
            ax_fps.plot(x, e2e, "s--", color=color, label=f"{name}: pipeline")
            all_fps += e2e
        base = [_nan(r.get("baseline_fps")) for r in group]
        if not all(math.isnan(v) for v in base) and model not in baselines:
            # The naive loop is the same for every precision of a model: drawn once, at each point
            # where it was run (beside that point's pipeline run).
            baselines.add(model)
            if len(set(base)) == 1:
                ax_fps.axhline(base[0], color=color, linestyle=":", linewidth=1.5, label=f"{short}: naive loop")
            else:
                ax_fps.plot(x, base, "x:", color=color, linewidth=1.5, label=f"{short}: naive loop")
            all_fps += base
        if has_ap:
            ax_ap.plot(x, [_nan(r.get("ap")) for r in group], "o-", color=color, label=f"{name}: AP")
            ax_ap.plot(x, [_nan(r.get("ap50")) for r in group], "^--", color=color, label=f"{name}: AP50")
    for target, style in zip(TARGET_FPS, ("--", "-."), strict=True):
        ax_fps.axhline(target, color="0.35", linestyle=style, linewidth=1)
        ax_fps.annotate(f"{target} fps target", xy=(0.01, target), xycoords=("axes fraction", "data"),
                        xytext=(0, 3), textcoords="offset points", fontsize=8, color="0.3")
    finite = [v for v in all_fps if v > 0]  # NaN is not > 0
    ax_fps.set_yscale("log")
    low = min(finite + [TARGET_FPS[0]]) / 1.6
    high = max(finite + [TARGET_FPS[-1]]) * 1.6
    ax_fps.set_ylim(low, high)
    # Plain numbers on the log axis: 1-2-5 steps plus the targets, no 6×10^1 minor labels.
    ticks = [m * 10**e for e in range(-2, 4) for m in (1, 2, 5)] + list(TARGET_FPS)
    ax_fps.yaxis.set_major_locator(FixedLocator(sorted(t for t in ticks if low <= t <= high)))
    ax_fps.yaxis.set_minor_locator(NullLocator())
    ax_fps.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax_fps.set_ylabel("frames per second (log)")
    ax_fps.grid(True, alpha=0.3)
    ax_fps.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax_fps.set_title(title, fontsize=10)

    ax_ap.set_xscale("log")
    proposals = sorted({r["proposals"] for r in rows})
    ax_ap.xaxis.set_major_locator(FixedLocator(proposals))
    ax_ap.xaxis.set_minor_locator(NullLocator())
    ax_ap.xaxis.set_major_formatter(ScalarFormatter())
    ax_ap.set_xlabel("RPN proposals kept per image (log)")
    ax_ap.set_ylabel("COCO AP")
    ax_ap.set_ylim(-0.02, 1.02)
    ax_ap.grid(True, alpha=0.3)
    if has_ap:
        ax_ap.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax_ap.text(0.5, 0.5, "AP not measured: no labelled frames (pass --annotations COCO.json)",
                   ha="center", va="center", transform=ax_ap.transAxes, fontsize=9, color="0.4")
    fig.text(0.01, 0.006, "solid: detector alone (staged, batch 1) · dashed: pipeline end to end (decode → detect → draw → encode)\n"
             "dotted ×: naive single-thread loop calling the torchvision model directly (fp32, its own proposal count), "
             "run beside each pipeline point", fontsize=8, color="0.3")
    fig.tight_layout(rect=(0, 0.035, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _nan(value) -> float:
    return float("nan") if value is None else float(value)
