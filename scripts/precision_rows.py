#!/usr/bin/env python3
"""Where the false boxes come from: one change at a time, same data, same budget, each a measured row.

Every training row fine-tunes the same starting checkpoint (``--init``, the shipped v3) on the same
labelled pictures (make model's ``WORK/labels``) for the same number of iterations with the same seed,
changing one thing; the inference rows change one setting of the starting model. Each is scored on
the hand-labelled held-out set as a user runs the model (``run.py eval``: 300 proposals, fp32):
precision, recall and people found at score ≥ 0.5, the false boxes by kind, AP50.

    python scripts/precision_rows.py --work .cache/v4 --iters 1500 --out docs/model_v4_rows.json

Writes the rows (JSON) as they finish, so a stopped run keeps what it measured; a row whose
checkpoint exists is not trained again. A "then …" row scores a training row's model with an inference
setting (``TRAINED_INFERENCE_ROWS``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import make_model  # noqa: E402

# (name, what changes, extra train options, data weights per staged folder)
TRAINING_ROWS = [
    ("control", "v3's recipe continued (lr 0.001)", [], make_model.KINDS),
    ("part negatives 0.5", "half of the RoI head's negatives drawn from RoIs ≥ 70 % inside a label",
     ["--part-negatives", "0.5"], make_model.KINDS),
    ("no ignore on parts", "ignore regions ≥ 70 % inside a label of their class dropped (116 of 1355 in the photos)",
     ["--drop-part-ignore", "0.7"], make_model.KINDS),
    ("labels ≥ 0.5", "teacher labels scored 0.4–0.5 (half of them) become ignore regions",
     ["--label-score", "0.5"], make_model.KINDS),
    ("RoI positives IoU ≥ 0.6", "RoIs at IoU 0.5–0.6 with a label are neither positive nor negative",
     ["--roi-fg-iou", "0.6"], make_model.KINDS),
    ("RoI IoU ≥ 0.6 + labels ≥ 0.5", "the two rows above that measured best, together",
     ["--roi-fg-iou", "0.6", "--label-score", "0.5"], make_model.KINDS),
    ("RoI IoU ≥ 0.6 + labels ≥ 0.5 + context 2×",
     "the row above, and the box head also reads the region around each RoI (the RoI grown 2×, pooled 3×3)",
     ["--roi-fg-iou", "0.6", "--label-score", "0.5", "--roi-context", "2"], make_model.KINDS),
    ("RoI IoU ≥ 0.6 + labels ≥ 0.5 + trunk 13–21 trained",
     "the same two, and the trunk's last layers (the YOLO head's 13–21, which mix the two levels) train with the neck",
     ["--roi-fg-iou", "0.6", "--label-score", "0.5", "--trunk-train-from", "13"], make_model.KINDS),
    ("RoI IoU ≥ 0.7 + labels ≥ 0.5", "RoIs at IoU 0.5–0.7 with a label are neither (instead of 0.5–0.6)",
     ["--roi-fg-iou", "0.7", "--label-score", "0.5"], make_model.KINDS),
    ("RoI IoU ≥ 0.6 + labels ≥ 0.5 + 512 RoIs", "the same two, and the head samples 512 RoIs a picture instead of 128 "
     "(4× the negatives: more parts and background seen as such)",
     ["--roi-fg-iou", "0.6", "--label-score", "0.5", "--roi-batch", "512"], make_model.KINDS),
    ("RoI IoU ≥ 0.8 + labels ≥ 0.5", "RoIs at IoU 0.5–0.8 with a label are neither (v5's 0.7 one step further)",
     ["--roi-fg-iou", "0.8", "--label-score", "0.5"], make_model.KINDS),
    ("RoI IoU ≥ 0.7 + labels ≥ 0.5 + 512 RoIs", "v5's two changes and the head samples 512 RoIs a picture instead of 128",
     ["--roi-fg-iou", "0.7", "--label-score", "0.5", "--roi-batch", "512"], make_model.KINDS),
    ("RoI IoU ≥ 0.7 + labels ≥ 0.5 + still animals dropped",
     "v5's two changes, and in the clips' frames the animals and balls found at one place in half the clip's frames "
     "or more (a paper bag 'bird', a stone 'sheep': 897 labels and ignore regions) are dropped, so learnt as background",
     ["--roi-fg-iou", "0.7", "--label-score", "0.5", "--drop-still", "0.5"], make_model.KINDS),
    ("RoI IoU ≥ 0.7 + labels ≥ 0.5 + still animals dropped + people cut by the frame kept",
     "v6's recipe, and a zoom-in that shows a box's top with its bottom cut by the frame keeps it a label from 30 % "
     "visible (was: an ignore region below 60 %), half of the tall zoom-ins showing the top: a person from the chest up, "
     "as a webcam frames one, is taught as a person",
     ["--roi-fg-iou", "0.7", "--label-score", "0.5", "--drop-still", "0.5", "--keep-cut-bottom", "0.3"], make_model.KINDS),
    ("v7's recipe + 512 RoIs", "v7's training (v6's recipe and people cut by the frame kept) and the head samples 512 "
     "RoIs a picture instead of 128 (4× the negatives: more parts seen as background)",
     ["--roi-fg-iou", "0.7", "--label-score", "0.5", "--drop-still", "0.5", "--keep-cut-bottom", "0.3", "--roi-batch", "512"],
     make_model.KINDS),
    ("v7's recipe for 2400 iterations", "v7's training run twice as long (training length, on v7's recipe)",
     ["--roi-fg-iou", "0.7", "--label-score", "0.5", "--drop-still", "0.5", "--keep-cut-bottom", "0.3",
      "--iters-per-epoch", "2400"], make_model.KINDS),
    ("v7's recipe + hard negatives 0.5", "v7's training, and half of the RoI head's negatives are the ones it scores "
     "surest as objects now (online hard-negative mining: a torso it calls 'person', a bag it calls 'bird'), the other "
     "half uniform as before",
     ["--roi-fg-iou", "0.7", "--label-score", "0.5", "--drop-still", "0.5", "--keep-cut-bottom", "0.3", "--hard-negatives", "0.5"], make_model.KINDS),
    ("v7's recipe for 600 iterations", "v7's training run half as long (training length, the other way)",
     ["--roi-fg-iou", "0.7", "--label-score", "0.5", "--drop-still", "0.5", "--keep-cut-bottom", "0.3",
      "--iters-per-epoch", "600"], make_model.KINDS),
    ("v7's recipe without cut-outs", "v7's training without the 133 cut-out pictures (objects on grey; on v3's "
     "recipe their absence raised recall and AP50)", ["--roi-fg-iou", "0.7", "--label-score", "0.5", "--drop-still", "0.5", "--keep-cut-bottom", "0.3"],
     {k: w for k, w in make_model.KINDS.items() if k != "cutouts"}),
    ("v7's recipe + RoI borders", "v7's training, and the box head also reads each RoI's distances to the picture's "
     "four edges (a head and shoulders cut by the frame is a person; the same inside a whole person is a part)",
     ["--roi-fg-iou", "0.7", "--label-score", "0.5", "--drop-still", "0.5", "--keep-cut-bottom", "0.3", "--roi-borders"],
     make_model.KINDS),
    ("v7's recipe + soft labels", "v7's training, and the RoI head's classifier learns each label's class at the "
     "label's score (the teachers' fused confidence, 0.5–1 after v7's labels ≥ 0.5) and the rest as background, "
     "instead of 1: the teacher's soft class scores as targets",
     ["--roi-fg-iou", "0.7", "--label-score", "0.5", "--drop-still", "0.5", "--keep-cut-bottom", "0.3", "--soft-labels"],
     make_model.KINDS),
    ("zoom 0.5–2×", "scale augmentation 0.5–2× instead of 0.3–3× (fewer crops that make a torso a whole label)",
     ["--scale-range", "0.5,2"], make_model.KINDS),
    ("no cut-outs", "without the 133 cut-out pictures (objects on grey)", [],
     {k: w for k, w in make_model.KINDS.items() if k != "cutouts"}),
]
INFERENCE_ROWS = [
    ("NMS IoU 0.3", "the RoI head's per-class NMS at IoU 0.3 instead of 0.5", ["--nms-threshold", "0.3"]),
    ("inside a higher box 0.8", "after NMS, a box ≥ 80 % inside a higher-scoring box of its class is dropped",
     ["--contained", "0.8"]),
    ("inside a higher box 0.6", "the same at 60 %", ["--contained", "0.6"]),
]

# an inference setting on a training row's model: (name, what changes, the training row, eval options)
TRAINED_INFERENCE_ROWS = [
    ("RoI IoU ≥ 0.6, then inside a higher box 0.8", "the RoI IoU ≥ 0.6 row's model with the 0.8 inference filter",
     "RoI positives IoU ≥ 0.6", ["--contained", "0.8"]),
    ("people cut by the frame kept, then NMS IoU 0.3", "the row above's model with the RoI head's per-class NMS at IoU "
     "0.3 instead of 0.5 (the 12 duplicates were second boxes on one person) — v7, as shipped (the checkpoint carries "
     "NMS 0.3)", "RoI IoU ≥ 0.7 + labels ≥ 0.5 + still animals dropped + people cut by the frame kept", ["--nms-threshold", "0.3"]),
    ("people cut by the frame kept, then NMS IoU 0.4", "the same model with the per-class NMS at IoU 0.4",
     "RoI IoU ≥ 0.7 + labels ≥ 0.5 + still animals dropped + people cut by the frame kept", ["--nms-threshold", "0.4"]),
    ("people cut by the frame kept, then inside a higher box 0.8", "the same model with a box ≥ 80 % inside a "
     "higher-scoring box of its class dropped instead", "RoI IoU ≥ 0.7 + labels ≥ 0.5 + still animals dropped + people cut by the frame kept", ["--contained", "0.8"]),
    ("v7's recipe + 512 RoIs, then NMS IoU 0.3", "the row above's model with v7's NMS at IoU 0.3",
     "v7's recipe + 512 RoIs", ["--nms-threshold", "0.3"]),
    ("v7's recipe for 2400 iterations, then NMS IoU 0.3", "the row above's model with v7's NMS at IoU 0.3",
     "v7's recipe for 2400 iterations", ["--nms-threshold", "0.3"]),
    ("v7's recipe for 600 iterations, then NMS IoU 0.3", "the row above's model with v7's NMS at IoU 0.3",
     "v7's recipe for 600 iterations", ["--nms-threshold", "0.3"]),
    ("v7's recipe without cut-outs, then NMS IoU 0.3", "the row above's model with v7's NMS at IoU 0.3",
     "v7's recipe without cut-outs", ["--nms-threshold", "0.3"]),
    ("v7's recipe + hard negatives 0.5, then NMS IoU 0.3", "the row above's model with v7's NMS at IoU 0.3",
     "v7's recipe + hard negatives 0.5", ["--nms-threshold", "0.3"]),
    ("v7's recipe + soft labels, then NMS IoU 0.3", "the row above's model with v7's NMS at IoU 0.3",
     "v7's recipe + soft labels", ["--nms-threshold", "0.3"]),
    ("v7's recipe + RoI borders, then NMS IoU 0.3", "the row above's model with v7's NMS at IoU 0.3",
     "v7's recipe + RoI borders", ["--nms-threshold", "0.3"]),
]

# the same inference settings on the shipped model (v5): what a filter still removes once training has
SHIPPED = ROOT / "assets" / "default_model.pt"
SHIPPED_ROWS = [
    ("v5 + inside a higher box 0.8", "v5 as shipped, a box ≥ 80 % inside a higher-scoring box of its class dropped",
     ["--contained", "0.8"]),
    ("v5 + inside a higher box 0.6", "the same at 60 %", ["--contained", "0.6"]),
    ("v5 + NMS IoU 0.3", "v5 as shipped, the RoI head's per-class NMS at IoU 0.3 instead of 0.5",
     ["--nms-threshold", "0.3"]),
]


def score(weights: Path, out: Path, extra: list[str]) -> dict:
    subprocess.run([sys.executable, "run.py", "eval", "--data", str(make_model.HELDOUT), "--weights", str(weights),
                    "--proposals", "300", "--recall-score", "0.5", "--json", str(out), *extra], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    metrics = json.loads(out.read_text())
    at = {round(r["score"], 2): r for r in metrics["precision"]}[0.5]
    person = metrics.get("per_class_found", {}).get("person", [0, 0])
    return {"precision": round(at["precision"], 3), "false": at["false"], "false_by_kind": at["false_by_kind"],
            "recall": round(at["recall"], 3), "people": f"{person[0]}/{person[1]}",
            "AP50": round(metrics["AP50"], 3), "AP": round(metrics["AP"], 3)}


def run_dir(base: Path, name: str) -> Path:
    """A training row's folder: its name made a file name."""
    return base / name.replace(" ", "_").replace("–", "-").replace("≥", "ge").replace("×", "x")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=str(ROOT / ".cache" / "v4"), help="make model's work folder (labels/)")
    p.add_argument("--init", default=str(ROOT / "assets" / "default_model.pt"), help="the starting checkpoint")
    p.add_argument("--iters", type=int, default=1500, help="training iterations per row")
    p.add_argument("--rows", action="append", default=[], metavar="NAME",
                   help="only this row (its whole name, which may hold commas; repeat for more); default all")
    p.add_argument("--shipped", default=str(SHIPPED), help="the model the 'v5 + …' inference rows change (v5's checkpoint)")
    p.add_argument("--out", default=str(ROOT / "docs" / "model_v4_rows.json"))
    args = p.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    labels = {k: work / "labels" / f"{k}.json" for k in make_model.KINDS}
    missing = [str(v) for v in labels.values() if not v.is_file()]
    if missing:
        raise SystemExit(f"no labels: {', '.join(missing)} (run: python scripts/make_model.py --work {work} --until label)")
    only = {r.strip() for r in args.rows if r.strip()}
    unknown = only - {"start"} - {r[0] for r in (*INFERENCE_ROWS, *SHIPPED_ROWS, *TRAINING_ROWS, *TRAINED_INFERENCE_ROWS)}
    if unknown:
        raise SystemExit(f"--rows: no row named {', '.join(sorted(unknown))}")
    done = json.loads(out.read_text()) if out.is_file() else {"rows": []}
    done["setup"] = {"init": Path(args.init).name, "iterations": args.iters, "train": make_model.finetune_options(args.iters),
                     "heldout": str(make_model.HELDOUT.relative_to(ROOT)), "proposals": 300, "precision": "fp32",
                     "heldout_pictures": len(json.loads(Path(make_model.HELDOUT).read_text())["images"])}
    rows = {r["name"]: r for r in done["rows"]}

    def save(row: dict) -> None:
        rows[row["name"]] = row
        done["rows"] = list(rows.values())
        out.write_text(json.dumps(done, indent=1))
        print(json.dumps(row), flush=True)

    base = work / "rows"
    base.mkdir(parents=True, exist_ok=True)
    if not only or "start" in only:
        save({"name": "start", "change": f"{Path(args.init).name} as shipped", **score(Path(args.init), base / "start.json", [])})
    for name, change, extra in INFERENCE_ROWS:
        if not only or name in only:
            save({"name": name, "change": change, "kind": "inference",
                  **score(Path(args.init), base / f"{name.replace(' ', '_')}.json", extra)})
    for name, change, extra in SHIPPED_ROWS:
        if only and name in only:  # asked for by name only: the shipped model changes with each version
            save({"name": name, "change": change, "kind": "inference",
                  **score(Path(args.shipped), base / f"{name.replace(' ', '_').replace('+', 'and')}.json", extra)})
    for name, change, extra, kinds in TRAINING_ROWS:
        if only and name not in only:
            continue
        run = run_dir(base, name)
        started = time.time()
        if not (run / "last.pt").is_file():
            run.mkdir(parents=True, exist_ok=True)
            data = ",".join(f"{labels[k]}:{w}" for k, w in kinds.items())
            with (run / "train.log").open("w") as log:
                subprocess.run([sys.executable, "run.py", "train", "--data", data, "--out", str(run), "--init", args.init,
                                *make_model.finetune_options(args.iters), *extra,
                                *(["--trunk-precision", "bf16"] if make_model.bf16_is_fast() else [])],
                               check=True, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        minutes = round((time.time() - started) / 60, 1)
        save({"name": name, "change": change, "kind": "training", "options": extra,
              "data": {k: w for k, w in kinds.items()}, "train_minutes": minutes,
              **score(run / "last.pt", run / "eval.json", [])})
    trained = {name: extra for name, _, extra, _ in TRAINING_ROWS}
    for name, change, row, extra in TRAINED_INFERENCE_ROWS:
        if only and name not in only:
            continue
        run = run_dir(base, row)
        if not (run / "last.pt").is_file():
            raise SystemExit(f"{name}: the row {row!r} has no model yet (run: --rows {row!r})")
        save({"name": name, "change": change, "kind": "training + inference",
              "options": [*trained[row], "eval " + " ".join(extra)],
              **score(run / "last.pt", run / f"eval_{'_'.join(extra).lstrip('-')}.json", extra)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
