#!/usr/bin/env python3
"""Which backbone for the v3 default model: train the same recipe on each candidate backbone for
the same short time budget, score each on the hand-labelled held-out set and time each on 640×480
frames in one run; writes docs/model_v3_backbones.json (read by the model card).

Needs the staged and labelled data of ``make_model.py --until label`` (CACHE/v3/labels).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import make_model  # noqa: E402

CANDIDATES = {
    # name: (arch flags replacing make_model.ARCH's backbone flags, backbone weights file in the cache)
    "nanodet (NanoDet-g CSP+PAN frozen + its head towers trained, class-prior box head)": (
        ["--backbone", "nanodet", "--neck", "head", "--box-head", "prior", "--anchor-sizes", "auto"],
        make_model.BACKBONE_WEIGHTS["nanodet"]),
    "yolov3_tiny (YOLOv3-tiny trunk frozen, the paper's fc box head; v2's and v3's)": (
        ["--backbone", "yolov3_tiny", "--anchor-sizes", "16,32,64;128,256,512"], make_model.BACKBONE_WEIGHTS["yolov3_tiny"]),
}
BACKBONE_FLAGS = ("--backbone", "--neck", "--box-head", "--anchor-sizes")


def arch_for(flags: list[str]) -> list[str]:
    """make_model.ARCH with its backbone-specific (flag, value) pairs (BACKBONE_FLAGS) replaced by ``flags``:
    a flag a candidate does not name takes the trainer's default."""
    pairs = list(zip(make_model.ARCH[::2], make_model.ARCH[1::2], strict=True))
    return [*flags, *(x for flag, value in pairs if flag not in BACKBONE_FLAGS for x in (flag, value))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=str(ROOT / ".cache"))
    p.add_argument("--minutes", type=float, default=15.0, help="training budget per backbone")
    p.add_argument("--out", default=str(ROOT / "docs" / "model_v3_backbones.json"))
    args = p.parse_args(argv)
    cache = Path(args.cache)
    work = cache / "v3"
    labels = {k: work / "labels" / f"{k}.json" for k in make_model.KINDS}
    missing = [str(p) for p in labels.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"labels missing ({', '.join(missing)}): run `python scripts/make_model.py --until label` first")
    data = ",".join(f"{labels[k]}:{w}" for k, w in make_model.KINDS.items())
    checkpoints = {}
    for name, (flags, weights) in CANDIDATES.items():
        run = work / "compare" / flags[1]
        if not (run / "last.pt").is_file():
            run.mkdir(parents=True, exist_ok=True)
            extra = ["--trunk-precision", "bf16"] if make_model.bf16_is_fast() else []
            make_model.sh([sys.executable, "run.py", "train", "--data", data, "--out", run,
                           "--backbone-weights", cache / weights, *arch_for(flags), *make_model.TRAIN, *extra,
                           "--time-limit", str(args.minutes)], log=run / "train.log")
        checkpoints[name] = run / "last.pt"
    speed = make_model.measure_speed(checkpoints)
    rows = []
    for name, ckpt in checkpoints.items():
        out = ckpt.parent / "heldout.json"
        make_model.sh([sys.executable, "run.py", "eval", "--data", make_model.HELDOUT, "--weights", ckpt,
                       "--proposals", "300", "--json", out])
        m = json.loads(out.read_text())
        history = json.loads((ckpt.parent / "history.json").read_text())
        persons = m["per_class_found"].get("person", [0, 0])
        rows.append({"backbone": name, "AP": m["AP"], "AP50": m["AP50"], "recall": m["recall"],
                     "persons": f"{persons[0]}/{persons[1]}", "ms": speed[name]["ms"],
                     "iterations": history[-1]["iterations"] if history else None})
    note = (f"Measured {date.today().isoformat()} by `scripts/compare_backbones.py`: the make-model recipe with "
            f"each backbone, {args.minutes:g} min of training each on the same labelled data, scored on the "
            "hand-labelled held-out set (300 proposals) and timed in one run (2 threads, fp32). Iterations "
            + ", ".join(f"{r['backbone'].split(' ')[0]} {r['iterations']}" for r in rows) + ".")
    Path(args.out).write_text(json.dumps({"note": note, "rows": rows}, indent=1))
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
