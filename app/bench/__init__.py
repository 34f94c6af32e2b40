"""``bench``: proposal count vs fps (and AP), per stage, with a naive baseline in the same run.

For every model × precision × proposal count it measures the staged detector (fps; per-stage ms,
median and p90, after warm-up, device-synchronised), the pipeline end to end (decode → detect → draw
→ encode) on the same clip, AP / AP50 on labelled frames, and peak memory. In the same run, right
beside every pipeline run, a naive single-thread loop calls the torchvision model directly (fp32,
the model's own proposal count) on the same frames; the pipeline's fps over the naive loop's is the
speed-up. Writes results.csv, results.json and proposals_vs_fps.png to --out.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import UserError, UserErrorParser

from .defaults import (  # not from .sweep: this module must not load torch
    DEFAULT_FRAMES,
    DEFAULT_PROPOSALS,
    DEFAULT_WARMUP,
)

if TYPE_CHECKING:
    from .sweep import BenchConfig

__all__ = ["build_parser", "config_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = UserErrorParser(prog="run.py bench", see=" (see run.py bench --help)", description=__doc__.split("\n\n")[0],
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--video", type=Path, required=True,
                   help="the clip to measure on (e.g. assets/sample.mp4)")
    p.add_argument("--model", default="default", help="model name(s), comma-separated")
    p.add_argument("--weights", default="default",
                   help="weights: one for every model, or one per model (comma-separated): default, random, torchvision or a file")
    p.add_argument("--backbone", default="mobilenet_v2", help="backbone of the 'paper' model")
    p.add_argument("--proposals", default=",".join(map(str, DEFAULT_PROPOSALS)), help="RPN proposal counts, comma-separated")
    p.add_argument("--scales", default=None,
                   help="input short sides in pixels, comma-separated (e.g. 240,320,480,640,800): a scale × proposals "
                        "grid with the Pareto front of fps and AP50 marked, plotted to scale_vs_proposals.png "
                        "(default: the model's own size only)")
    p.add_argument("--precision", default=None,
                   help="fp32, fp16, bf16, int8, comma-separated (default: fp32 on the CPU, fp32,fp16 on CUDA)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames measured per setting (the first N of the clip)")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="uncounted detector calls before each setting")
    p.add_argument("--score-threshold", type=float, default=0.05,
                   help="detections below are dropped (0.05, COCO's convention, so that AP sees the whole precision-recall curve)")
    p.add_argument("--min-size", type=int, default=None, help="resize the short side to this (default: the model's own)")
    p.add_argument("--max-size", type=int, default=None, help="cap the long side at this (default: the model's own)")
    p.add_argument("--annotations", type=Path, default=None,
                   help="COCO JSON labelling frames of the clip (images tied to frames by frame_index); "
                        "default for the bundled sample: the held-out teacher "
                        "labels `make model` writes (.cache/data/vtest_heldout.json, offset 650); none otherwise")
    p.add_argument("--frame-offset", type=int, default=0,
                   help="subtract from the labels' frame numbers (labels made on a longer video the clip was cut from)")
    p.add_argument("--out", type=Path, default="bench", help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty --out (replaces only the files the bench writes: results.csv, "
                        "results.json, proposals_vs_fps.png and, with --scales, scale_vs_proposals.png)")
    p.add_argument("--no-pipeline", action="store_true", help="skip the end-to-end pipeline runs")
    p.add_argument("--no-baseline", action="store_true", help="skip the naive loop")
    p.add_argument("--note", default="", help="a line stored in results.json (e.g. what else ran on the machine)")
    p.add_argument("--profile-file", type=Path, default=None,
                   help="with labels: also write the model's profile here — the int8 verdict (--precision fp32,int8) "
                        "and the accuracy grid (--scales) that --precision auto and --target-fps use; "
                        "assets/model_profiles.json ships the bundled model's. It always goes to the user cache")
    return p


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    from .sweep import BenchConfig

    models = _split(args.model, "--model")
    weights = _split(args.weights, "--weights")
    if len(weights) == 1:
        weights *= len(models)
    if len(weights) != len(models):
        raise UserError(f"--weights has {len(weights)} values for {len(models)} models ({args.model}); give one, or one per model")
    return BenchConfig(
        models=tuple(zip(models, weights, strict=True)),
        proposals=int_list(args.proposals, "--proposals"),
        precisions=tuple(_split(args.precision, "--precision")) if args.precision else None,
        **{name: getattr(args, name) for name in (
            "video", "device", "frames", "warmup", "score_threshold", "min_size", "max_size", "backbone",
            "annotations", "frame_offset", "out", "overwrite", "note", "profile_file")},
        pipeline=not args.no_pipeline,
        baseline=not args.no_baseline,
        scales=int_list(args.scales, "--scales") if args.scales else None,
    )


def _split(text: str, option: str) -> list[str]:
    items = [s.strip() for s in text.split(",")]
    if not text.strip() or any(not s for s in items):
        raise UserError(f"{option} {text!r} must be a comma-separated list without empty entries")
    return items


def int_list(text: str, option: str) -> tuple[int, ...]:
    """Whole numbers ≥ 1 from a comma-separated option, sorted and unique (bench and eval), or a one-line ``UserError``."""
    values = []
    for item in _split(text, option):
        try:
            value = int(item)
        except ValueError:
            raise UserError(f"{option} {text!r}: {item!r} is not an integer") from None
        if value < 1:
            raise UserError(f"{option} {text!r}: {value} must be ≥ 1")
        values.append(value)
    return tuple(sorted(set(values)))


def main(argv: Sequence[str] | None = None) -> int:
    # Idle OpenMP threads sleep, as app.cli.run sets before torch loads (see there): the product as
    # run.py runs it. A value the user set is kept, and results.json records it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    from .sweep import run_bench

    result = run_bench(config_from_args(args), progress_stream=sys.stderr)
    print("\n".join([result.table, *(f"note: {note}" for note in result.notes)]))
    print(f"wrote {', '.join(str(p) for p in result.files)}")
    return 0
