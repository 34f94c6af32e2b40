"""autolabel: three real frames → a COCO JSON that pycocotools loads (a stub teacher always; the real
YOLOv3-tiny teacher when its files are present)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from app.jobs import autolabel
from detector.detections import Detections
from tests.conftest import cut_clip
from tests.detector.conftest import read_frames
from tests.detector.darknet_files import darknet_dir, needs_darknet
from tests.detector.tfjs_files import needs_tfjs, tfjs_dir

NAMES = ("__background__", "person", "bicycle", "car", "motorcycle", "bus", "truck", "dog")


class StubTeacher:
    """Two boxes per frame: a confident person and an uncertain car, placed from the frame's size."""

    class_names = NAMES
    sizes = (416,)

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def detect_one(self, rgb: np.ndarray) -> Detections:
        h, w = rgb.shape[:2]
        self.seen.append((h, w))
        return Detections(np.array([[10, 20, 40, 100], [w - 60, h - 40, w - 1, h - 1]], np.float32),
                          np.array([0.9, 0.3], np.float32), np.array([1, 3]), NAMES)


def _load(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


@pytest.fixture(scope="module")
def three_frames(tmp_path_factory) -> Path:
    return cut_clip(tmp_path_factory.mktemp("clip") / "three.mp4", 3)


def test_video_to_coco_json_with_frames_written(tmp_path, three_frames):
    out = tmp_path / "labels.json"
    teacher = StubTeacher()
    autolabel.autolabel(three_frames, out, teacher, ("person", "car"), min_score=0.25, label_score=0.5)
    coco = _load(out)
    assert len(coco.imgs) == 3 and teacher.seen == [(576, 768)] * 3
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"person", "car"}
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == 6
    assert sorted(a["iscrowd"] for a in anns) == [0, 0, 0, 1, 1, 1]  # the 0.3 car is an ignore region
    person = next(a for a in anns if a["iscrowd"] == 0)
    assert person["bbox"] == [10.0, 20.0, 30.0, 80.0]  # COCO x, y, w, h
    for info in coco.imgs.values():
        image = cv2.imread(str(out.parent / info["file_name"]))
        assert image is not None and image.shape[:2] == (info["height"], info["width"])


def test_image_folder_and_class_filter(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, frame in enumerate(read_frames(3)):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(frame[:240, :320], cv2.COLOR_RGB2BGR))
    out = tmp_path / "folder.json"
    autolabel.autolabel(folder, out, StubTeacher(), ("person",), min_score=0.25, label_score=0.5)
    coco = _load(out)
    assert len(coco.imgs) == 3 and len(coco.getAnnIds()) == 3  # cars not asked for
    assert all(Path(i["file_name"]).is_file() for i in coco.imgs.values())


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert autolabel.main([str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "x.json")]) == 2
    assert autolabel.main([str(tmp_path), "--out", str(tmp_path / "x.json"), "--teacher-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    assert "yolov3-tiny.cfg" in err[1]


@needs_darknet
def test_real_teacher_on_three_frames(tmp_path, three_frames):
    out = tmp_path / "real.json"
    assert autolabel.main([str(three_frames), "--out", str(out), "--teacher-dir", str(darknet_dir())]) == 0
    coco = _load(out)
    assert len(coco.imgs) == 3
    people = [a for a in coco.loadAnns(coco.getAnnIds(catIds=coco.getCatIds(catNms=["person"]))) if not a["iscrowd"]]
    assert len(people) >= 3 * 4  # this scene shows at least 4 clearly visible people per frame
    assert json.loads(out.read_text())["info"]["sizes"] == [416, 608]


def test_fused_teachers_keep_the_two_threshold_scheme(tmp_path, three_frames):
    pytest.importorskip("ensemble_boxes")
    from detector.fusion import FusedTeacher

    out = tmp_path / "fused.json"
    teacher = FusedTeacher([StubTeacher(), StubTeacher()])
    autolabel.autolabel(three_frames, out, teacher, ("person", "car"), min_score=0.25, label_score=0.5)
    anns = _load(out).loadAnns(_load(out).getAnnIds())
    # two teachers agreeing keep their scores: the 0.9 person is a label, the 0.3 car an ignore region
    assert sorted((a["category_id"], a["iscrowd"]) for a in anns) == [(1, 0)] * 3 + [(2, 1)] * 3
    assert "fused by WBF" in json.loads(out.read_text())["info"]["teacher"]


def test_centernet_may_not_label_and_teacher_lists_are_checked(tmp_path, capsys):
    image = tmp_path / "one.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    assert autolabel.main([str(image), "--out", str(tmp_path / "x.json"), "--teachers", "yolo,centernet"]) == 2
    assert autolabel.main([str(image), "--out", str(tmp_path / "x.json"), "--teachers", "yolo,ssd"]) == 2
    assert autolabel.main([str(image), "--out", str(tmp_path / "x.json"), "--teachers", "yolo,nanodet",
                           "--fuse-weights", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "licence" in err[0] and "ssd" in err[1] and "1 weights for 2 teachers" in err[2]
    assert not (tmp_path / "x.json").exists()


@needs_darknet
@needs_tfjs
def test_real_yolo_and_nanodet_fused_on_all_classes(tmp_path, three_frames):
    out = tmp_path / "fused.json"
    assert autolabel.main([str(three_frames), "--out", str(out), "--teacher-dir", str(darknet_dir()),
                           "--tfjs-dir", str(tfjs_dir()), "--teachers", "yolo,nanodet", "--classes", "all",
                           "--end", "2"]) == 0
    data = json.loads(out.read_text())
    assert len(data["categories"]) == 80 and len(data["images"]) == 2
    assert "YOLOv3-tiny" in data["info"]["teacher"] and "NanoDet" in data["info"]["teacher"]
    people = [a for a in data["annotations"] if a["category_id"] == 1 and not a["iscrowd"]]
    assert len(people) >= 2 * 4  # at least 4 clearly visible people per frame


def test_video_only_options_are_refused_for_pictures(tmp_path, capsys):
    """--start/--end/--every/--images-dir pick and place a video's frames; on an image folder or one
    image they were dropped in silence (every picture labelled)."""
    (tmp_path / "pics").mkdir()
    cv2.imwrite(str(tmp_path / "pics" / "a.png"), cv2.cvtColor(read_frames(1)[0], cv2.COLOR_RGB2BGR))
    for source in (tmp_path / "pics", tmp_path / "pics" / "a.png"):
        for extra in (["--every", "5"], ["--start", "2"], ["--end", "9"], ["--images-dir", str(tmp_path)]):
            assert autolabel.main([str(source), "--out", str(tmp_path / "x.json"), *extra]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith(f"error: {extra[0]} is for a video"), err


def test_a_class_named_twice_is_one_category(tmp_path):
    """--classes person,car,person gave two 'person' categories (ids 1 and 3), only one of them used."""
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), cv2.cvtColor(read_frames(1)[0], cv2.COLOR_RGB2BGR))
    out = tmp_path / "twice.json"
    autolabel.autolabel(folder, out, StubTeacher(), ("person", "car", "person"), min_score=0.25, label_score=0.5)
    coco = _load(out)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["person", "car"]
    assert len(coco.getAnnIds()) == 2


def test_an_out_that_is_a_folder_is_refused_before_labelling(tmp_path, capsys):
    """--out labels/ failed only when the JSON was written, after every frame had been labelled."""
    (tmp_path / "labels").mkdir()
    assert autolabel.main([str(tmp_path), "--out", str(tmp_path / "labels")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --out {tmp_path / 'labels'} is a folder; give the COCO JSON's file name"], err


@pytest.mark.parametrize("extra, message", [
    (["--fuse-iou", "5"], "--fuse-iou 5.0 must be an IoU in (0, 1]"),
    (["--fuse-iou", "nan"], "--fuse-iou nan must be an IoU in (0, 1]"),
    (["--fuse-weights", "1,-1"], "--fuse-weights '1,-1': every weight must be a number > 0"),
    (["--fuse-weights", "1,nan"], "--fuse-weights '1,nan': every weight must be a number > 0"),
])
def test_bad_fusion_settings_are_one_line_before_any_teacher_loads(tmp_path, capsys, extra, message):
    """The fusion took any IoU and weights (WBF then merged nonsense); checked before the teachers load."""
    args = [str(tmp_path), "--out", str(tmp_path / "x.json"), "--teachers", "yolo,nanodet", *extra]
    assert autolabel.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {message}"], err


def test_a_teacher_score_out_of_range_is_one_line(tmp_path, capsys):
    """--teacher-score 2 (or nan) kept no box at all: an empty dataset, with no word."""
    for bad in ("2", "nan", "-0.1"):
        assert autolabel.main([str(tmp_path), "--out", str(tmp_path / "x.json"), "--teacher-score", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: --teacher-score {float(bad)} must be a score in [0, 1]"], err


@pytest.mark.parametrize("extra, message", [
    (["--teachers", "nanodet", "--sizes", "320"], "YOLOv3-tiny sizes are for the yolo teacher"),
    (["--nanodet-sizes", "320"], "--nanodet-sizes is for the nanodet teacher"),
    (["--tfjs-dir", "x", "--teacher-dir", "y"], None),  # folders: scripts give both to any teacher
    (["--fuse-iou", "0.6"], "--fuse-iou is for several teachers fused"),
    (["--teachers", "yolo,nanodet", "--fuse-conf", "max"], None),
])
def test_teacher_options_of_a_teacher_not_run_are_refused(tmp_path, capsys, extra, message):
    """--sizes with --teachers nanodet, --fuse-iou with one teacher ... were dropped in silence. The
    accepted ones (None) fail later, on what this empty folder lacks: the teacher's files or images."""
    assert autolabel.main([str(tmp_path), "--out", str(tmp_path / "x.json"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    if message is None:
        assert "teacher: " in err[0] or "holds no images" in err[0], err
    else:
        assert message in err[0], err


def test_a_video_named_with_a_colon_is_a_file_not_a_protocol(tmp_path, monkeypatch):
    """'2024-01-01T10:00.mp4' given relative: FFmpeg read it as the protocol '2024-01-01T10'."""
    import shutil

    from app.jobs.autolabel import iter_video
    from tests.conftest import SAMPLE

    shutil.copy(SAMPLE, tmp_path / "2024-01-01T10:00.mp4")
    monkeypatch.chdir(tmp_path)
    assert len(list(iter_video(Path("2024-01-01T10:00.mp4"), 0, 4))) == 4
