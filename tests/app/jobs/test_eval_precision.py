"""``run.py eval --detections``: an export of ``run.py --images DIR --export`` scored with its false boxes."""

from __future__ import annotations

import csv
import json

import pytest

from app.io.export import COLUMNS
from app.jobs import evaluate as eval_cli


def _data(tmp_path):
    def ann(i, image, cat, box, crowd=0):
        x1, y1, x2, y2 = box
        return {"id": i, "image_id": image, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1), "iscrowd": crowd}

    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480},
                       {"id": 2, "file_name": "b.jpg", "width": 640, "height": 480}],
            "annotations": [ann(1, 1, 1, (100, 100, 200, 400)), ann(2, 2, 2, (10, 10, 110, 60))],
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return path


def _export(tmp_path, rows):
    path = tmp_path / "dets.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*COLUMNS, "file"])
        for i, (file, cls, score, box) in enumerate(rows):
            w.writerow([i, 0.0, cls, score, *box, -1, f"/some/dir/{file}"])
    return path


def test_eval_scores_an_export_with_its_false_boxes(tmp_path, capsys):
    gt = _data(tmp_path)
    dets = _export(tmp_path, [
        ("a.jpg", "person", 0.9, (100, 100, 200, 400)),   # true
        ("a.jpg", "person", 0.8, (110, 100, 170, 160)),   # part: a head inside the person
        ("a.jpg", "person", 0.4, (400, 10, 450, 60)),     # background, only at score ≥ 0.3
        ("b.jpg", "person", 0.7, (10, 10, 110, 60)),      # wrong class: a person on the car
    ])
    out = tmp_path / "m.json"
    assert eval_cli.main(["--data", str(gt), "--detections", str(dets), "--json", str(out)]) == 0
    low, high = json.loads(out.read_text())["precision"]
    assert (low["score"], low["true"], low["false"]) == (0.3, 1, 3)
    assert low["false_by_kind"] == {"duplicate": 0, "part": 1, "wrong_class": 1, "loose": 0, "background": 1}
    assert (high["score"], high["true"], high["false"], high["precision"]) == (0.5, 1, 2, pytest.approx(1 / 3))
    text = capsys.readouterr().out
    assert "precision at score ≥ 0.5: precision 0.33" in text
    assert "| b.jpg | 1 | 0 | 1 (0/0/1/0/0) | 0 | 1 (0/0/1/0/0) |" in text


def test_eval_refuses_an_export_of_other_pictures(tmp_path, capsys):
    gt = _data(tmp_path)
    dets = _export(tmp_path, [("elsewhere.jpg", "person", 0.9, (0, 0, 10, 10))])
    assert eval_cli.main(["--data", str(gt), "--detections", str(dets)]) == 2
    assert "elsewhere.jpg" in capsys.readouterr().err
    assert eval_cli.main(["--data", str(gt), "--detections", str(tmp_path / "none.csv")]) == 2


def test_pictures_of_one_name_in_two_folders_are_told_apart(tmp_path, capsys):
    """cam1/a.jpg and cam2/a.jpg: an export row is matched by as much of its path as the JSON's
    file_name gives (both rows went to one picture by the bare name, the other had none)."""
    data = json.loads(_data(tmp_path).read_text())
    data["images"][0]["file_name"], data["images"][1]["file_name"] = "cam1/a.jpg", "cam2/a.jpg"
    gt = tmp_path / "two.json"
    gt.write_text(json.dumps(data))
    dets = _export(tmp_path, [("cam1/a.jpg", "person", 0.9, (100, 100, 200, 400)),
                              ("cam2/a.jpg", "car", 0.9, (10, 10, 110, 60))])
    out = tmp_path / "m.json"
    assert eval_cli.main(["--data", str(gt), "--detections", str(dets), "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert (metrics["found"], metrics["objects"]) == (2, 2) and metrics["AP50"] == pytest.approx(1.0)
    ambiguous = _export(tmp_path, [("a.jpg", "person", 0.9, (100, 100, 200, 400))])  # /some/dir/a.jpg
    assert eval_cli.main(["--data", str(gt), "--detections", str(ambiguous)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/some/dir/a.jpg" in err[0] and "cam1/a.jpg" in err[0], err
