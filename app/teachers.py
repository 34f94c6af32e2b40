"""The teachers by name, for ``autolabel`` and ``eval``: one, or several fused by weighted boxes fusion.

| name | model | licence | may label training data |
|---|---|---|---|
| yolo | YOLOv3-tiny (Darknet, cv2.dnn), ``.cache/darknet`` | YOLO: public domain | yes |
| nanodet | NanoDet-g (TF.js graph → torch), ``.cache/tfjs`` | Apache-2.0 | yes |
| centernet | CenterNet-MobileNetV3 (TF.js graph), ``.cache/tfjs`` | none given upstream | **no: evaluation only** |
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from app.errors import UserError

TEACHERS = ("yolo", "nanodet", "centernet")
EVALUATION_ONLY = {"centernet": "its upstream (610265158/mobilenetv3_centernet) has no licence"}
DEFAULT_DARKNET_DIR = Path(".cache") / "darknet"
DEFAULT_TFJS_DIR = Path(".cache") / "tfjs"


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


def parse_floats(text: str | None, what: str) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{what} {text!r} must be comma-separated numbers") from None


def build_teacher(names: Sequence[str], score_threshold: float, yolo_sizes: Sequence[int] = (416, 608),
                  nanodet_sizes: Sequence[int] = (416,), darknet_dir: str | Path = DEFAULT_DARKNET_DIR,
                  tfjs_dir: str | Path = DEFAULT_TFJS_DIR, weights: Sequence[float] | None = None,
                  iou_thr: float = 0.55, conf_type: str = "avg"):
    """One teacher (``detect_one(rgb) -> Detections``, ``class_names``, ``sizes``, ``description``), or
    a ``detector.fusion.FusedTeacher`` of several. Missing files raise ``UserError`` naming them."""
    from detector.teacher import TeacherError, YoloTeacher
    from detector.tfjs import TfjsError
    from detector.tfjs_teachers import CenterNetTeacher, NanoDetTeacher

    teachers = []
    try:
        for name in names:
            if name == "yolo":
                teachers.append(YoloTeacher.from_directory(darknet_dir, sizes=tuple(yolo_sizes),
                                                           score_threshold=score_threshold, color="rgb"))
            elif name == "nanodet":
                teachers.append(NanoDetTeacher.from_directory(tfjs_dir, sizes=tuple(nanodet_sizes),
                                                              score_threshold=score_threshold))
            else:
                teachers.append(CenterNetTeacher.from_directory(tfjs_dir, score_threshold=score_threshold))
    except (TeacherError, TfjsError, ValueError) as exc:
        raise UserError(f"teacher: {exc}") from None
    if len(teachers) == 1:
        return teachers[0]
    try:
        import ensemble_boxes  # noqa: F401
    except ImportError:
        raise UserError("fusing several teachers needs the ensemble-boxes package: pip install -e '.[model]'") from None
    from detector.fusion import FusedTeacher

    try:
        return FusedTeacher(teachers, weights, iou_thr=iou_thr, conf_type=conf_type)
    except ValueError as exc:
        raise UserError(f"--teachers: {exc}") from None
