"""The teachers by name, for ``autolabel`` and ``eval``: one, or several fused by weighted boxes fusion.

| name | model | licence | may label training data |
|---|---|---|---|
| yolo | YOLOv3-tiny (Darknet, cv2.dnn), ``.cache/darknet`` | YOLO: public domain | yes |
| nanodet | NanoDet-g (TF.js graph → torch), ``.cache/tfjs`` | Apache-2.0 | yes |
| centernet | CenterNet-MobileNetV3 (TF.js graph), ``.cache/tfjs`` | none given upstream | **no: evaluation only** |
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from app.errors import UserError, user_errors

TEACHERS = ("yolo", "nanodet", "centernet")
EVALUATION_ONLY = {"centernet": "its upstream (610265158/mobilenetv3_centernet) has no licence"}
DEFAULT_DARKNET_DIR = Path(".cache") / "darknet"
DEFAULT_TFJS_DIR = Path(".cache") / "tfjs"
NANODET_SIZES, FUSE_IOU, FUSE_CONF = "416", 0.55, "avg"  # the defaults of the options of those names


def parse_names(text: str, purpose: str) -> tuple[str, ...]:
    """``"yolo,nanodet"`` → ("yolo", "nanodet"), checked; ``purpose`` "label" refuses evaluation-only teachers."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in TEACHERS]
    if not names or unknown:
        raise UserError(f"--teachers {text!r}: expected a comma list of {', '.join(TEACHERS)}")
    if purpose == "label":
        for n in names:
            if n in EVALUATION_ONLY:
                raise UserError(f"--teachers {n}: may not label training data ({EVALUATION_ONLY[n]}); "
                                "use it with `run.py eval --teachers` only")
    return names


def parse_numbers(text: str, what: str, kind: type = float) -> tuple:
    """``"416,608"`` → (416, 608) with ``kind`` int (floats by default); else a one-line ``UserError``."""
    try:
        return tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{what} {text!r} must be comma-separated {'integers' if kind is int else 'numbers'}") from None


def build_teacher(names: Sequence[str], score_threshold: float, yolo_sizes: Sequence[int] = (416, 608),
                  nanodet_sizes: Sequence[int] = (416,), darknet_dir: str | Path = DEFAULT_DARKNET_DIR,
                  tfjs_dir: str | Path = DEFAULT_TFJS_DIR, weights: Sequence[float] | None = None,
                  iou_thr: float = 0.55, conf_type: str = "avg"):
    """One teacher (``detect_one(rgb) -> Detections``, ``class_names``, ``sizes``, ``description``), or
    a ``detector.fusion.FusedTeacher`` of several. Missing files raise ``UserError`` naming them."""
    from detector.teacher import TeacherError, YoloTeacher
    from detector.tfjs import TfjsError
    from detector.tfjs_teachers import CenterNetTeacher, NanoDetTeacher

    load = {"yolo": partial(YoloTeacher.from_directory, darknet_dir, sizes=tuple(yolo_sizes), color="rgb"),
            "nanodet": partial(NanoDetTeacher.from_directory, tfjs_dir, sizes=tuple(nanodet_sizes)),
            "centernet": partial(CenterNetTeacher.from_directory, tfjs_dir)}
    with user_errors(TeacherError, TfjsError, ValueError, prefix="teacher: "):
        teachers = [load[name](score_threshold=score_threshold) for name in names]
    if len(teachers) == 1:
        return teachers[0]
    try:
        import ensemble_boxes  # noqa: F401
    except ImportError:
        raise UserError("fusing several teachers needs the ensemble-boxes package: pip install -e '.[model]'") from None
    from detector.fusion import FusedTeacher

    with user_errors(ValueError, prefix="--teachers: "):
        return FusedTeacher(teachers, weights, iou_thr=iou_thr, conf_type=conf_type)


def add_teacher_arguments(p: argparse.ArgumentParser, default_teachers: str | None, yolo_sizes_flags: Sequence[str]) -> None:
    """The options that choose and tune the teachers, shared by ``autolabel`` and ``eval``.

    ``yolo_sizes_flags``: the option name(s) of YOLOv3-tiny's sizes (``--sizes`` in autolabel,
    ``--teacher-sizes`` in eval, where giving it alone also means "score YOLOv3-tiny")."""
    p.add_argument("--teachers", default=default_teachers,
                   help="comma list of yolo, nanodet, centernet (several: fused by weighted boxes fusion); "
                        "centernet may evaluate, never label")
    p.add_argument("--teacher-dir", default=str(DEFAULT_DARKNET_DIR),
                   help="folder with yolov3-tiny.cfg, yolov3-tiny.weights and coco.names (make teacher fetches them)")
    p.add_argument("--tfjs-dir", default=str(DEFAULT_TFJS_DIR), help="folder with NanoDet's and CenterNet's TF.js files")
    p.add_argument(*yolo_sizes_flags, dest="yolo_sizes", default=None,
                   help="YOLOv3-tiny input sizes, merged by per-class NMS (default 416,608)")
    p.add_argument("--nanodet-sizes", default=NANODET_SIZES,
                   help="NanoDet input sizes, merged by per-class NMS")
    p.add_argument("--fuse-weights", default=None, help="one weight per teacher for the fusion (default: equal)")
    p.add_argument("--fuse-iou", type=float, default=FUSE_IOU,
                   help="IoU above which the fusion merges same-class boxes")
    p.add_argument("--fuse-conf", default=FUSE_CONF,
                   help="how fused scores combine (ensemble_boxes conf_type: avg, max, …)")


def parse_sizes(text: str, flag: str) -> tuple[int, ...]:
    sizes = parse_numbers(text, flag, int)
    if not sizes or any(s < 32 or s % 32 for s in sizes):
        raise UserError(f"{flag} {text!r}: every size must be a multiple of 32 (e.g. 416,608)")
    return sizes


def teacher_from_args(args: argparse.Namespace, purpose: str, score_threshold: float):
    """The teacher that ``add_teacher_arguments``' options describe (``purpose``: "label" or "evaluate")."""
    names = parse_names(args.teachers or "yolo", purpose)
    _refuse_unused(args, names)
    weights = parse_numbers(args.fuse_weights, "--fuse-weights") if args.fuse_weights else None
    if weights is not None and len(weights) != len(names):
        raise UserError(f"--fuse-weights {args.fuse_weights!r}: {len(weights)} weights for {len(names)} teachers")
    if weights is not None and not all(0 < w < math.inf for w in weights):
        raise UserError(f"--fuse-weights {args.fuse_weights!r}: every weight must be a number > 0")
    if not 0 < args.fuse_iou <= 1:
        raise UserError(f"--fuse-iou {args.fuse_iou} must be an IoU in (0, 1]")
    return build_teacher(names, score_threshold, yolo_sizes=parse_sizes(args.yolo_sizes or "416,608", "YOLOv3-tiny sizes"),
                         nanodet_sizes=parse_sizes(args.nanodet_sizes, "--nanodet-sizes"), darknet_dir=args.teacher_dir,
                         tfjs_dir=args.tfjs_dir, weights=weights, iou_thr=args.fuse_iou, conf_type=args.fuse_conf)


def _refuse_unused(args: argparse.Namespace, names: Sequence[str]) -> None:
    """A setting of a teacher that does not run, or of the fusion with one teacher, is one line (the
    folders of the teachers' files may be given for any: scripts pass them all)."""
    fused = len(names) > 1
    for what, given, used, whose in (
            ("YOLOv3-tiny sizes are", args.yolo_sizes is not None, "yolo" in names, "the yolo teacher"),
            ("--nanodet-sizes is", args.nanodet_sizes != NANODET_SIZES, "nanodet" in names,
             "the nanodet teacher"),
            ("--fuse-weights is", args.fuse_weights is not None, fused, "several teachers fused"),
            ("--fuse-iou is", args.fuse_iou != FUSE_IOU, fused, "several teachers fused"),
            ("--fuse-conf is", args.fuse_conf != FUSE_CONF, fused, "several teachers fused")):
        if given and not used:
            raise UserError(f"{what} for {whose}; this run's teachers: {', '.join(names)}")
