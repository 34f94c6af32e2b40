"""``eval``: COCO AP / AP50 / AP75 (and AP50 per class) of a model — or of the teacher — on a COCO JSON,
and the share of objects found (recall at IoU ≥ 0.5 of the detections scoring ≥ 0.3; all, per class, persons),
and what it gets wrong: precision at the model's own threshold and at 0.5, and the false boxes,
overall and per picture, by kind (duplicate, part of a labelled object, wrong class, loose, background;
``detector/precision.py`` defines them).

Instead of a model (``--model``/``--weights`` as for running it): ``--detections dets.csv`` scores the
export of ``run.py --images DIR --export dets.csv``; ``--teacher-sizes`` or ``--teachers`` the teachers
(several: fused by weighted boxes fusion). AP is computed by pycocotools; detections of classes the
JSON does not have are ignored.

``--precision fp32,int8`` scores each precision and writes the int8 verdict (int8's AP50 within 0.01
of fp32's at the model's own input size; the worst proposal count decides) to the model's profile
(the user's, and ``--profile-file``), which ``--precision auto`` reads. ``--scales … --proposals …``
scores every input size × proposal count and writes the AP50 grid (weighted by labelled boxes) that
the adaptive controller ranks its settings by; pictures of any size work.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2

from app.bench import int_list
from app.errors import UserError, UserErrorParser, user_errors
from app.jobs.teachers import add_teacher_arguments, teacher_from_args

# the options (dests) that only a model's run, or only a teacher's, reads
MODEL_OPTIONS = ("model", "weights", "proposals", "scales", "score_threshold", "nms_threshold", "contained",
                 "min_size", "max_size", "device", "precision", "int8_float", "profile_file")
TEACHER_OPTIONS = ("teacher_dir", "tfjs_dir", "nanodet_sizes", "fuse_weights", "fuse_iou", "fuse_conf")
PRECISION_SCORE = 0.5  # precision is also reported here, whatever the model's threshold
CURVE_SCORES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def build_parser() -> argparse.ArgumentParser:
    p = UserErrorParser(prog="run.py eval", see=" (see run.py eval --help)", description=__doc__.split("\n\n")[0],
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="COCO JSON with the ground truth (file_name relative to it)")
    p.add_argument("--model", default="default", help="model name (default = the bundled checkpoint)")
    p.add_argument("--weights", default="default", help="'default', 'torchvision', or a weights/checkpoint file")
    p.add_argument("--proposals", default="300",
                   help="RPN proposals per image after NMS; several comma-separated score each")
    p.add_argument("--scales", default=None,
                   help="input sizes (short side, px), comma-separated: score each and write the AP50 grid")
    p.add_argument("--score-threshold", type=float, default=0.05, help="detections below are dropped (low for AP)")
    p.add_argument("--nms-threshold", type=float, default=None,
                   help="IoU of the RoI head's per-class NMS (default: the model's own, else 0.5)")
    p.add_argument("--contained", type=float, default=None, metavar="SHARE",
                   help="drop a box with this share of its area inside a higher-scoring box of its class "
                        "(default: the model's own setting, else off)")
    p.add_argument("--min-size", type=int, default=None, help="test short side (default: the model's)")
    p.add_argument("--max-size", type=int, default=None, help="test long-side limit (default: the model's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32",
                   help="the model's precision, or several comma-separated (fp32,int8: also writes the int8 verdict)")
    p.add_argument("--int8-float", default=None, metavar="LAYERS",
                   help="int8 leaves these backbone layers (comma-separated qualified names) in float; the verdict "
                        "records them (default: those of the model's verdict for this CPU's scheme, else none)")
    p.add_argument("--profile-file", default=None,
                   help="also write the int8 verdict and the AP50 grid to this profile file (e.g. assets/model_profiles.json)")
    add_teacher_arguments(p, None, ("--teacher-sizes",))
    p.add_argument("--recall-iou", type=float, default=0.5, help="IoU at which a detection finds an object")
    p.add_argument("--recall-score", type=float, default=0.3,
                   help="detections scoring at least this count for the recall (the threshold a user runs with); "
                        "precision is reported at the model's own threshold (this one for teachers and exports) and 0.5")
    p.add_argument("--detections", default=None,
                   help="score this export of run.py --images DIR --export FILE (.csv/.json) instead of running a model")
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from detector.evaluate import format_metrics

    try:
        _refuse_unused(parser, args)
        precisions = _precisions(args)
        proposals = int_list(args.proposals, "--proposals")
        scales = int_list(args.scales, "--scales") if args.scales else ()  # sizes the detector refuses: one line
        coco = _ground_truth(args)
        detector = None  # a model's, when one is scored
        if args.detections:
            exported = _exported(Path(args.detections), coco)
            rows = [{"precision": precisions[0], "metrics": run(args, coco, None, exported)}]
        elif args.yolo_sizes or args.teachers:
            teacher = teacher_from_args(args, "evaluate", args.score_threshold)
            rows = [{"precision": precisions[0], "metrics": run(args, coco, teacher.detect_one)}]
        else:
            detector = _model(args, precisions[0], proposals[0])  # one model, its knobs switched cell by cell
            args.own_score = detector.default_score_threshold
            rows = [{"precision": precision, "input_size": size, "proposals": n,
                     "metrics": run(args, coco, lambda rgb: detector.detect([rgb], timing=False)[0])}
                    for precision, size, n in _cells(detector, precisions, scales, proposals)]
        if len(rows) == len(precisions):  # one cell per precision: the full report of each
            for row in rows:
                metrics = row["metrics"]
                tag = f" [{row['precision']}]" if len(rows) > 1 else ""
                print(f"{args.data}{tag}: {format_metrics(metrics)}  [{metrics['images']} images, {metrics['seconds']:.1f} s]")
                found = ", ".join(f"{name} {f}/{n}" for name, (f, n) in metrics["per_class_found"].items())
                print(f"found per class (IoU ≥ {args.recall_iou:g}, score ≥ {args.recall_score:g}): {found or 'no objects'}")
                _print_precision(metrics["precision"])
        else:
            for row in rows:
                m = row["metrics"]
                print(f"[{row['precision']}] {row['input_size']} px, {row['proposals']} proposals: AP {m['AP']:.3f}  "
                      f"AP50 {m['AP50']:.3f}  recall {m['found']}/{m['objects']}  [{m['seconds']:.1f} s]")
        if detector is not None:
            _write_profile(args, rows, detector, coco)
        if args.json:  # one cell's metrics, each precision's, or every cell
            out = (rows[0]["metrics"] if len(rows) == 1 else
                   {row["precision"]: row["metrics"] for row in rows} if len(rows) == len(precisions) else
                   rows)
            with user_errors(OSError, prefix=f"--json {args.json} cannot be written: "):
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json).write_text(json.dumps(out, indent=1))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _cells(detector, precisions: list[str], scales: Sequence[int], proposals: Sequence[int]):
    """(precision, input size, proposals) for every cell, with the detector's knobs set to it."""
    from detector.config import ConfigError

    with user_errors(ConfigError):
        for precision in precisions:
            detector.set_precision(precision)
            for size in scales or [detector.base_input_size]:
                detector.set_input_size(size)
                for n in proposals:
                    detector.set_proposal_count(n)
                    yield precision, size, n
    detector.set_input_size(detector.base_input_size)


def _precisions(args) -> list[str]:
    found = [p.strip() for p in str(args.precision).split(",") if p.strip()]
    bad = [p for p in found if p not in ("fp32", "fp16", "bf16", "int8")]
    if not found or bad:
        raise UserError(f"--precision {args.precision!r}: expected fp32, fp16, bf16 or int8, comma-separated")
    if args.profile_file and not ({"fp32", "int8"} <= set(found) or args.scales):
        raise UserError("--profile-file writes the int8 verdict or the AP50 grid: it needs --precision fp32,int8 or --scales")
    return list(dict.fromkeys(found))


def _refuse_unused(parser: argparse.ArgumentParser, args) -> None:
    """An option of what this run does not score (a model's with a teacher or an export, a teacher's
    with a model or an export) is one line, never ignored."""
    options = (*MODEL_OPTIONS, *TEACHER_OPTIONS, "teachers", "yolo_sizes")
    given = [dest for dest in options if getattr(args, dest) != parser.get_default(dest)]
    if args.detections:
        scored, unused = "an export", given
    elif args.yolo_sizes or args.teachers:
        scored, unused = "a teacher", [d for d in given if d in MODEL_OPTIONS and d != "score_threshold"]
    else:
        scored, unused = "a model", [d for d in given if d in TEACHER_OPTIONS]
    if unused:
        flag = "--teacher-sizes" if unused[0] == "yolo_sizes" else f"--{unused[0].replace('_', '-')}"
        kind = "a model" if unused[0] in MODEL_OPTIONS else "a teacher"
        raise UserError(f"{flag} is for {kind}; this run scores {scored}")


def _write_profile(args, rows: list[dict], detector, coco) -> None:
    """The int8 verdict (fp32 and int8 both scored at the model's own size) and the AP50 grid
    (two input sizes or more), in the user's profile and ``--profile-file``."""
    from app.bench.profile import accuracy_profile, int8_profile, write_profile
    from detector.profiles import model_identity

    name = Path(args.data).name
    flat = [{"precision": r["precision"], "input_size": r["input_size"], "proposals": r["proposals"],
             "ap50": r["metrics"]["AP50"], "per_class_ap50": r["metrics"]["per_class_AP50"],
             "ap_images": r["metrics"]["images"]} for r in rows]
    records = {}
    int8 = int8_profile([r for r in flat if r["input_size"] == detector.base_input_size], name,
                        float_layers=detector.int8_float_layers)
    if int8 is not None:
        records["int8"] = int8
        verdict = "may be picked by --precision auto" if int8["ok"] else "is not offered by --precision auto"
        kept = f" ({', '.join(int8['float_layers'])} in float)" if int8.get("float_layers") else ""
        print(f"int8{kept} AP50 {int8['ap50_int8']:.3f} vs fp32 {int8['ap50_fp32']:.3f}: int8 {verdict}")
    grid = accuracy_profile(flat, coco, name)
    if grid is not None:
        records["accuracy"] = grid
        print(f"AP50 grid ({len(grid['scales'])} sizes × {len(grid['proposals'])} proposal counts) written to the model's profile")
    write_profile(model_identity(detector), records, (None, *([Path(args.profile_file)] if args.profile_file else [])))


def _ground_truth(args):
    """The checked options and the loaded COCO ground truth of ``--data``."""
    from detector.evaluate import load_coco

    path = Path(args.data)
    if not 0.0 < args.recall_iou <= 1.0:  # at IoU ≥ 0 a detection anywhere finds an object
        raise UserError(f"--recall-iou {args.recall_iou} must be in (0, 1]")
    if not 0.0 <= args.recall_score <= 1.0:
        raise UserError(f"--recall-score {args.recall_score} must be in [0, 1]")
    if not 0.0 <= args.score_threshold <= 1.0:  # a model's config says so too; a teacher takes any number
        raise UserError(f"--score-threshold {args.score_threshold} must be a score in [0, 1]")
    if not path.is_file():
        raise UserError(f"--data {path} does not exist")
    if args.json and Path(args.json).is_dir():
        raise UserError(f"--json {args.json} is a folder; give the metrics file's name")
    with user_errors(ValueError, prefix=f"--data {path}: "):
        coco = load_coco(path)
    if not coco.imgs:
        raise UserError(f"--data {path} has no images: nothing to score")
    return coco


def run(args, coco, detect, predictions: dict | None = None) -> dict:
    """The metrics of ``detect`` (RGB image → Detections) or of ``predictions`` (image id → Detections)
    on ``coco`` (``args.data``'s ground truth): AP, recall and, under "precision", ``false_boxes`` at
    the model's own threshold (``args.own_score``, else ``args.recall_score``) and at 0.5."""
    from detector.evaluate import evaluate
    from detector.precision import false_boxes

    path = Path(args.data)
    started = time.perf_counter()
    if predictions is None:
        predictions = {}
        for image_id, info in sorted(coco.imgs.items()):
            file = path.parent / info["file_name"]  # an absolute file_name stays as it is
            if not file.is_file():  # before imread, which says so itself on stderr (a WARN line)
                raise UserError(f"image {file} (id {image_id}) of {path} does not exist")
            bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if bgr is None:
                raise UserError(f"image {file} (id {image_id}) of {path} cannot be read")
            predictions[image_id] = detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    seconds = time.perf_counter() - started
    metrics = evaluate(coco, predictions, recall_iou=args.recall_iou, recall_score=args.recall_score)
    metrics["seconds"] = seconds
    metrics["precision"] = [false_boxes(coco, predictions, s, args.recall_iou)
                            for s in sorted({getattr(args, "own_score", args.recall_score), PRECISION_SCORE})]
    # the precision/recall trade a default threshold is chosen from (make model: the model carries it)
    curve = [(s, false_boxes(coco, predictions, s, args.recall_iou)) for s in CURVE_SCORES]
    metrics["precision_curve"] = [{"score": s, "precision": round(r["precision"], 4),
                                   "recall": round(r["recall"], 4), "false": r["false"], "found": r["found"]}
                                  for s, r in curve]
    return metrics


def _print_precision(reports: list[dict]) -> None:
    from detector.precision import format_precision, per_picture_table

    for report in reports:
        print(f"precision at {format_precision(report)}")
    print("false boxes per picture: duplicate (IoU ≥ 0.5 with a label already found) / part (≥ 70 % inside a label "
          "of its class) / wrong class (IoU ≥ 0.5 with another class's object) / loose (IoU ≥ 0.1 with its class) / "
          "background")
    print(per_picture_table(reports))


def _exported(path: Path, coco) -> dict:
    """Image id → Detections from an export of ``run.py --images DIR --export FILE``: a row's picture
    is the one whose ``file_name`` ends its path in the most parts (``cam1/a.jpg`` vs ``cam2/a.jpg``)."""
    import numpy as np

    from app.io.export import read_rows
    from detector.detections import Detections

    if not path.is_file():
        raise UserError(f"--detections {path} does not exist")
    with user_errors(ValueError, KeyError, OSError, prefix=f"--detections {path} cannot be read: "):
        rows = read_rows(path)
    if rows and "file" not in rows[0]:
        raise UserError(f"--detections {path} has no 'file' column: export an image folder (run.py --images DIR --export FILE)")
    of_name: dict[str, list[int]] = {}  # a picture's name → the images of that name
    for image_id, info in coco.imgs.items():
        of_name.setdefault(Path(info["file_name"]).name, []).append(image_id)
    ids = {file: _picture_of(file, of_name, coco, path) for file in {str(r["file"]) for r in rows}}
    unknown = sorted(Path(file).name for file, image_id in ids.items() if image_id is None)
    if unknown:
        raise UserError(f"--detections {path}: {len(unknown)} picture(s) not in --data, e.g. {unknown[0]!r}")
    names = ("__background__", *sorted({str(r["class"]) for r in rows}))
    index = {n: i for i, n in enumerate(names)}
    rows_of: dict[int, list[dict]] = {}
    for r in rows:
        rows_of.setdefault(ids[str(r["file"])], []).append(r)
    out = {}
    for image_id in coco.imgs:
        mine = rows_of.get(image_id, [])
        boxes = np.array([[float(r[k]) for k in ("x1", "y1", "x2", "y2")] for r in mine], np.float32).reshape(-1, 4)
        out[image_id] = Detections(boxes, np.array([float(r["score"]) for r in mine], np.float32),
                                   np.array([index[str(r["class"])] for r in mine], np.int64), names)
    return out


def _picture_of(file: str, of_name: dict[str, list[int]], coco, path: Path) -> int | None:
    """Which image of ``file``'s name (``of_name``) is ``file``: the one whose file_name shares the
    most trailing path parts with it (None: no image of that name); two as close is one line."""
    parts = Path(file).parts[::-1]
    shared = {i: len(os.path.commonprefix([parts, Path(coco.imgs[i]["file_name"]).parts[::-1]]))
              for i in of_name.get(Path(file).name, [])}
    found = [i for i, n in shared.items() if n == max(shared.values())]
    if len(found) > 1:
        names = " or ".join(coco.imgs[i]["file_name"] for i in found[:2])
        raise UserError(f"--detections {path}: picture {file} could be {names} of --data")
    return found[0] if found else None


def _model(args, precision: str, proposals: int):
    from app.pipeline.fastpath import sample_frames
    from detector.config import ConfigError, DetectorConfig
    from detector.detector import Detector
    from detector.weights import WeightsError

    with user_errors(ConfigError, WeightsError):
        config = DetectorConfig(model=args.model, weights=args.weights, device=args.device, precision=precision,
                                proposals=proposals, score_threshold=args.score_threshold,
                                nms_threshold=args.nms_threshold, contained_threshold=args.contained,
                                int8_float=None if args.int8_float is None else
                                tuple(n.strip() for n in args.int8_float.split(",") if n.strip()),
                                min_size=args.min_size, max_size=args.max_size)
        # int8 is calibrated on real frames (the bundled clip's), as run.py calibrates it
        detector = Detector(config, calibration=sample_frames)
    for note in detector.notes:
        print(f"note: {note}", file=sys.stderr)
    return detector

