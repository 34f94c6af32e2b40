"""``autolabel``: run the teacher(s) over a video, an image folder or one image → COCO JSON.

The teacher is YOLOv3-tiny by default; ``--teachers yolo,nanodet`` runs several and fuses their boxes
by weighted boxes fusion (``detector.fusion``); ``--classes all`` labels COCO's 80 classes.

Frames of a video are written as JPEG files next to the JSON (``<out stem>_images/``), so that the
JSON is an ordinary COCO dataset that ``train`` and ``eval`` read. Teacher boxes scoring at least
``--label-score`` become annotations; boxes between ``--min-score`` and ``--label-score`` are kept as
``iscrowd=1`` "ignore" regions (evaluation neither rewards nor punishes detections there; training
drops them), so that uncertain teacher boxes do not teach the student wrong background.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from app.errors import UserError, UserErrorParser, user_errors
from app.io.paths import ffmpeg_file
from app.jobs.teachers import add_teacher_arguments, teacher_from_args

DEFAULT_CLASSES = ("person", "bicycle", "car", "motorcycle", "bus", "truck")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def iter_video(path: Path, start: int = 0, end: int | None = None, every: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, RGB uint8 [H, W, 3]) of frames ``start <= i < end`` with ``i % every == 0``,
    decoded by PyAV in file order. A file PyAV cannot open raises ``UserError``."""
    import av

    with user_errors(av.error.FFmpegError, OSError, prefix=f"cannot open video {path}: "):
        container = av.open(ffmpeg_file(path))
    with container:
        if not container.streams.video:
            raise UserError(f"{path} has no video stream")
        for index, frame in enumerate(container.decode(video=0)):
            if end is not None and index >= end:
                break
            if index >= start and (index - start) % every == 0:
                yield index, frame.to_ndarray(format="rgb24")


def iter_images(paths: Sequence[Path]) -> Iterator[tuple[int, np.ndarray]]:
    """(position, RGB uint8 [H, W, 3]) of image files; an unreadable file raises ``UserError``."""
    for index, path in enumerate(paths):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UserError(f"cannot read image {path} (not an image, or corrupt)")
        yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def build_parser() -> argparse.ArgumentParser:
    p = UserErrorParser(prog="run.py autolabel", see=" (see run.py autolabel --help)",
                        description=__doc__.split("\n\n")[0],
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("source", help="a video file, a folder of images, or one image")
    p.add_argument("--out", required=True, help="COCO JSON to write")
    add_teacher_arguments(p, "yolo", ("--sizes",))
    p.add_argument("--teacher-score", type=float, default=None,
                   help="each teacher's own score threshold before the fusion (default: --min-score)")
    p.add_argument("--classes", default=",".join(DEFAULT_CLASSES),
                   help="COCO class names to label (comma-separated), or 'all' for the teacher's 80")
    p.add_argument("--min-score", type=float, default=0.25, help="teacher boxes below this are dropped")
    p.add_argument("--label-score", type=float, default=0.4,
                   help="boxes from --min-score up to this are marked iscrowd=1 (ignore); above it they are labels")
    p.add_argument("--start", type=int, default=0, help="first frame index (videos)")
    p.add_argument("--end", type=int, default=None, help="stop before this frame index (videos)")
    p.add_argument("--every", type=int, default=1, help="label every n-th frame (videos)")
    p.add_argument("--images-dir", default=None, help="where video frames are written (default: <out stem>_images)")
    return p


def autolabel(source: Path, out: Path, teacher, classes: Sequence[str], min_score: float, label_score: float,
              start: int = 0, end: int | None = None, every: int = 1, images_dir: Path | None = None) -> dict:
    """Label ``source`` with ``teacher`` (``detect_one(rgb) -> Detections``, e.g. a
    ``detector.teacher.YoloTeacher`` with color="rgb" or a ``detector.fusion.FusedTeacher``) and
    write the COCO JSON ``out``; returns the dataset dict. Boxes are COCO [x, y, w, h] in pixels."""
    classes = tuple(dict.fromkeys(classes))  # a class named twice is one category
    unknown = sorted(set(classes) - set(teacher.class_names[1:]))
    if unknown:
        raise UserError(f"--classes: {', '.join(unknown)} not among the teacher's COCO names")
    out = out.resolve()
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"{source} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        frames, names = iter_images(files), [str(f.resolve()) for f in files]
    elif source.suffix.lower() in IMAGE_SUFFIXES:
        frames, names = iter_images([source]), [str(source.resolve())]
    else:
        frames, names = iter_video(source, start, end, every), None
        images_dir = (images_dir or out.with_name(out.stem + "_images")).resolve()
        images_dir.mkdir(parents=True, exist_ok=True)
    category = {name: i for i, name in enumerate(classes, 1)}
    images: list[dict] = []
    annotations: list[dict] = []
    for index, rgb in frames:
        if names is None:
            path = images_dir / f"frame_{index:06d}.jpg"
            cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            file_name = str(path.relative_to(out.parent)) if path.is_relative_to(out.parent) else str(path)
        else:
            file_name = names[index]
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": file_name, "width": int(rgb.shape[1]),
                       "height": int(rgb.shape[0]), "frame_index": int(index)})
        det = teacher.detect_one(rgb).filter(min_score, list(classes))
        for box, score, name in zip(det.boxes, det.scores, det.labels, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category[name],
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": int(score < label_score),
                "score": round(float(score), 4),
            })
    if not images:
        raise UserError(f"{source} gave no frames (start {start}, end {end}, every {every})")
    dataset = {
        "info": {"description": f"teacher labels of {source.name}",
                 "teacher": getattr(teacher, "description", "YOLOv3-tiny (cv2.dnn, patched cfg)"),
                 "sizes": list(teacher.sizes), "min_score": min_score, "label_score": label_score},
        "images": images, "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": "object"} for i, n in enumerate(classes, 1)],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dataset))
    return dataset


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        source = Path(args.source)
        if not source.exists():
            raise UserError(f"source {source} does not exist")
        if Path(args.out).is_dir():
            raise UserError(f"--out {args.out} is a folder; give the COCO JSON's file name")
        if not 0.0 <= args.min_score <= args.label_score <= 1.0:
            raise UserError(f"need 0 ≤ --min-score ({args.min_score}) ≤ --label-score ({args.label_score}) ≤ 1")
        if args.teacher_score is not None and not 0.0 <= args.teacher_score <= 1.0:
            raise UserError(f"--teacher-score {args.teacher_score} must be a score in [0, 1]")
        if source.is_dir() or source.suffix.lower() in IMAGE_SUFFIXES:  # pictures: every one is labelled
            video_only = {"--start": args.start != 0, "--end": args.end is not None,
                          "--every": args.every != 1, "--images-dir": args.images_dir is not None}
            given = [flag for flag, set_ in video_only.items() if set_]
            if given:
                raise UserError(f"{given[0]} is for a video; {source} holds pictures, each one labelled")
        if args.every < 1 or args.start < 0 or (args.end is not None and args.end <= args.start):
            raise UserError(f"bad frame range: --start {args.start} --end {args.end} --every {args.every}")
        classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
        if not classes:
            raise UserError("--classes is empty")
        teacher = teacher_from_args(args, "label", args.min_score if args.teacher_score is None else args.teacher_score)
        if classes == ("all",):
            classes = tuple(teacher.class_names[1:])
        data = autolabel(source, Path(args.out), teacher, classes, args.min_score, args.label_score,
                         args.start, args.end, args.every, Path(args.images_dir) if args.images_dir else None)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    labels = sum(1 for a in data["annotations"] if not a["iscrowd"])
    print(f"{args.out}: {len(data['images'])} images, {labels} boxes, "
          f"{len(data['annotations']) - labels} ignore regions")
    return 0
