"""The train and eval commands end to end on one real frame: checkpoint, resume, AP, one-line errors."""

from __future__ import annotations

import json
import re

import cv2
import pytest
import torch

from app.jobs import evaluate as eval_cli
from app.jobs import train as train_cli
from detector import quantize
from detector.weights import load_checkpoint
from tests.detector.conftest import read_frames
from tests.detector.darknet_files import darknet_dir, needs_darknet
from tests.detector.test_train import PEOPLE
from tests.detector.tfjs_files import needs_tfjs, tfjs_dir


@pytest.fixture()
def one_json(tmp_path):
    cv2.imwrite(str(tmp_path / "f0.jpg"), cv2.cvtColor(read_frames(1)[0], cv2.COLOR_RGB2BGR))
    anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
             "area": (x2 - x1) * (y2 - y1), "iscrowd": 0} for i, (x1, y1, x2, y2) in enumerate(PEOPLE)]
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "f0.jpg", "width": 768, "height": 576}],
                                "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))
    return path


@pytest.fixture()
def no_training(monkeypatch):
    """A test of train's refusals fails, rather than trains, when a bad value gets through."""
    def unreached(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr("detector.train.Trainer", unreached)


TINY = ["--reduce-channels", "32", "--representation-size", "64", "--min-size", "256", "--max-size", "352",
        "--iters-per-epoch", "2", "--batch-size", "1", "--rpn-pre-nms-train", "200", "--rpn-post-nms-train", "100",
        "--warmup-iters", "1"]


def test_train_writes_checkpoint_history_and_resumes(tmp_path, one_json, capsys):
    out = tmp_path / "run"
    args = ["--train", str(one_json), "--val", f"self={one_json}", "--out", str(out), "--epochs", "1", *TINY]
    assert train_cli.main(args) == 0
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["model"] == "paper" and ckpt["class_names"] == ["__background__", "person"]
    assert ckpt["arch"]["backbone"] == "yolov3_tiny" and "backbone_kwargs" not in ckpt["arch"]
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and "self" in history[0]["val"]
    assert train_cli.main(["--train", str(one_json), "--out", str(out), "--epochs", "2", "--resume", *TINY]) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [1, 2]
    state = torch.load(out / "resume.pt", weights_only=True)
    assert state["epoch"] == 2

    # eval loads the checkpoint through the product's factory and scores it with pycocotools
    metrics_file = tmp_path / "m.json"
    assert eval_cli.main(["--data", str(one_json), "--weights", str(out / "last.pt"), "--json", str(metrics_file)]) == 0
    metrics = json.loads(metrics_file.read_text())
    assert 0.0 <= metrics["AP"] <= 1.0 and metrics["images"] == 1
    assert metrics["objects"] == 6 and metrics["per_class_found"]["person"][1] == 6
    assert "found per class (IoU ≥ 0.5, score ≥ 0.3): person " in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, one_json, capsys):
    assert train_cli.main(["--train", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")]) == 2
    assert train_cli.main(["--train", str(one_json), "--out", str(tmp_path / "o"), "--anchor-sizes", "16,x"]) == 2
    assert train_cli.main(["--train", str(one_json), "--out", str(tmp_path / "o"), "--resume"]) == 2
    assert eval_cli.main(["--data", str(one_json), "--weights", str(tmp_path / "none.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err), err


@needs_darknet
def test_eval_scores_the_teacher(tmp_path, one_json):
    out = tmp_path / "t.json"
    assert eval_cli.main(["--data", str(one_json), "--teacher-sizes", "416,608", "--teacher-dir", str(darknet_dir()),
                          "--json", str(out)]) == 0
    # the labels are the teacher's own hand-checked people: it must find them
    assert json.loads(out.read_text())["AP50"] > 0.9


@needs_tfjs
@pytest.mark.parametrize("teachers", ["nanodet", "centernet"])
def test_eval_scores_the_tfjs_teachers(tmp_path, one_json, teachers):
    out = tmp_path / "t.json"
    assert eval_cli.main(["--data", str(one_json), "--teachers", teachers, "--tfjs-dir", str(tfjs_dir()),
                          "--json", str(out)]) == 0
    # the two hand-checked people of the frame (head to feet) are found by each teacher
    assert json.loads(out.read_text())["AP50"] > 0.9


def test_train_mixes_weighted_sets_with_augmentation(tmp_path, one_json, capsys):
    crowd = json.loads(one_json.read_text())
    crowd["annotations"][0]["iscrowd"] = 1
    other = tmp_path / "other.json"
    other.write_text(json.dumps(crowd))
    out = tmp_path / "aug"
    args = ["--data", f"{one_json}:1.0,{other}:0.5", "--out", str(out), "--epochs", "1",
            "--augment", "mosaic,scale,color,flip", "--scale-range", "0.5,2", *TINY]
    assert train_cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "weight 0.5" in printed and "augmented (mosaic,scale,color,flip)" in printed and "IoA ≥ 0.5" in printed
    meta = load_checkpoint(out / "last.pt")["meta"]
    assert meta["train_data"] == {str(one_json): 1.0, str(other): 0.5}
    assert meta["train"]["augment"] == ["mosaic", "scale", "color", "flip"] and meta["train"]["scale_range"] == [0.5, 2.0]
    # --anchor-sizes auto gave the two-level backbone 3 sizes per level (k = 9 with the 3 ratios)
    assert load_checkpoint(out / "last.pt")["arch"]["anchor_sizes"] == [[16, 32, 64], [128, 256, 512]]


@pytest.mark.parametrize("extra, message", [
    (["--augment", "mosaic,zoom"], "'zoom' is unknown"),
    (["--scale-range", "3"], "--scale-range '3' must be 2 comma-separated numbers"),
    (["--scale-range", "3,0.3"], "scale range 3.0, 0.3"),
    (["--mosaic-prob", "2"], "mosaic probability 2.0"),
    (["--keep-cut-bottom", "2"], "keep_cut_bottom 2.0 must be a share in [0, 1]"),
    (["--ignore-ioa", "0"], "ignore_ioa 0.0"),
    (["--drop-still", "0"], "--drop-still 0.0 must be a share in (0, 1]"),
    (["--drop-part-ignore", "1.5"], "--drop-part-ignore 1.5 must be a share in (0, 1]"),
])
def test_bad_training_values_are_one_line(tmp_path, one_json, capsys, extra, message):
    assert train_cli.main(["--data", str(one_json), "--out", str(tmp_path / "o"), *TINY, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


@pytest.mark.parametrize("spec, message", [
    ("{json}:x", "the weight 'x' is not a number"),
    ("{json}:0", "must be a number > 0"),
    ("{json}:1,{missing}:1", "does not exist"),
    (",", "names no COCO JSON"),
])
def test_bad_data_specs_are_one_line(tmp_path, one_json, capsys, spec, message):
    spec = spec.format(json=one_json, missing=tmp_path / "missing.json")
    assert train_cli.main(["--data", spec, "--out", str(tmp_path / "o"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_eval_in_two_precisions_writes_the_int8_verdict(tmp_path, one_json, monkeypatch, capsys):
    """The shipped model scored in fp32 and int8 on a real frame: both results in the JSON, and the
    verdict (int8's AP50 within 0.01 of fp32's) in the user's profile and in --profile-file."""
    monkeypatch.setenv("FRCNN_CACHE_DIR", str(tmp_path / "cache"))
    out, profile = tmp_path / "m.json", tmp_path / "profiles.json"
    assert eval_cli.main(["--data", str(one_json), "--precision", "fp32,int8", "--profile-file", str(profile),
                          "--proposals", "100", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"fp32", "int8"} and metrics["fp32"]["AP50"] > 0.5  # it finds the people
    for path in (profile, tmp_path / "cache" / "model_profiles.json"):
        (profile_entry,) = json.loads(path.read_text()).values()
        (record,) = [v for k, v in profile_entry.items() if k.startswith("int8:")]  # one verdict, under its scheme
        assert record["scheme"] == quantize.scheme()  # measured as this CPU quantizes
        assert record["ap50_fp32"] == round(metrics["fp32"]["AP50"], 4)
        assert record["ap50_int8"] == round(metrics["int8"]["AP50"], 4)
        assert record["ok"] == (record["ap50_int8"] >= record["ap50_fp32"] - 0.01)
    assert re.search(r"int8( \(.* in float\))? AP50", capsys.readouterr().out)
    # a verdict needs both precisions; an unknown one is refused in one line
    assert eval_cli.main(["--data", str(one_json), "--precision", "int8", "--profile-file", str(profile)]) == 2
    assert eval_cli.main(["--data", str(one_json), "--precision", "fp64"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err), err


def test_eval_over_sizes_and_proposals_writes_the_ap50_grid(tmp_path, one_json, monkeypatch, capsys):
    """--scales × --proposals scores the shipped model in every cell on a real frame and writes the
    grid the adaptive controller ranks its settings by; each cell is the run's own AP50 (one class,
    so box-weighted AP50 is plain AP50), and the knobs are really switched (a smaller input, other boxes)."""
    from app.pipeline.adapt import accuracy_for
    from app.pipeline.fastpath import sample_frames
    from detector.config import DetectorConfig
    from detector.detector import Detector

    monkeypatch.setenv("FRCNN_CACHE_DIR", str(tmp_path / "cache"))
    out, profile = tmp_path / "grid.json", tmp_path / "profiles.json"
    assert eval_cli.main(["--data", str(one_json), "--scales", "160,416", "--proposals", "20,100",
                          "--profile-file", str(profile), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["input_size"], r["proposals"]) for r in rows] == [(160, 20), (160, 100), (416, 20), (416, 100)]
    (grid,) = [v["accuracy"] for v in json.loads(profile.read_text()).values()]
    assert grid["scales"] == [160, 416] and grid["proposals"] == [20, 100]
    assert grid["ap50"] == [[round(r["metrics"]["AP50"], 4) for r in rows[:2]], [round(r["metrics"]["AP50"], 4) for r in rows[2:]]]
    assert rows[3]["metrics"]["AP50"] > 0.5 and rows[0]["metrics"]["AP50"] != rows[3]["metrics"]["AP50"]
    assert "AP50 grid (2 sizes × 2 proposal counts)" in capsys.readouterr().out
    # the controller of a run of the same model finds it in the user's profile
    detector = Detector(DetectorConfig(), calibration=sample_frames)
    accuracy, size_range, source = accuracy_for(detector)
    assert accuracy is not None and size_range == (160, 416), source
    # bad lists are one line each
    for bad in (["--scales", "16,416"], ["--proposals", "x"], ["--scales", "160,416", "--teacher-sizes", "416"]):
        assert eval_cli.main(["--data", str(one_json), *bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err), err


def fine_tune(tmp_path, one_json, *extra):
    """Train a tiny model one epoch (a), then fine-tune it one epoch with ``extra`` (b): (b's
    checkpoint path, a's checkpoint, b's checkpoint)."""
    first, second = tmp_path / "a", tmp_path / "b"
    assert train_cli.main(["--train", str(one_json), "--out", str(first), "--epochs", "1", *TINY]) == 0
    assert train_cli.main(["--train", str(one_json), "--out", str(second), "--epochs", "1", "--init",
                           str(first / "last.pt"), *extra, *TINY]) == 0
    return second / "last.pt", load_checkpoint(first / "last.pt"), load_checkpoint(second / "last.pt")


def refused(tmp_path, one_json, capsys, init, *extra) -> str:
    """Fine-tuning ``init`` with ``extra`` is refused in one line: that line."""
    capsys.readouterr()
    rc = train_cli.main(["--train", str(one_json), "--out", str(tmp_path / "c"), "--epochs", "1", "--init", str(init),
                         *extra, *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    return err


def test_fine_tune_adds_roi_context_and_the_checkpoint_loads_with_it(tmp_path, one_json, capsys):
    """--init a model without context, --roi-context 2: the checkpoint's arch says so, its first fc
    layer is wider by the context's columns, and eval (the product's loader) runs it."""
    widened, old, new = fine_tune(tmp_path, one_json, "--roi-context", "2")
    assert "roi_context" not in old["arch"] and new["arch"]["roi_context"] == 2.0
    key = "roi_heads.box_head.fc6.weight"
    assert new["state_dict"][key].shape[1] - old["state_dict"][key].shape[1] == 32 * 3 * 3  # 32 channels, 3×3
    assert eval_cli.main(["--data", str(one_json), "--weights", str(widened)]) == 0
    assert "already pools its context at 2.0" in refused(tmp_path, one_json, capsys, widened, "--roi-context", "3")


def test_fine_tune_adds_roi_borders_after_the_context_never_before(tmp_path, one_json, capsys):
    """--init a model without border inputs, --roi-borders: 8 more zero-started columns, the arch says
    so and eval runs it; adding the context to a model that reads borders is refused in one line."""
    widened, old, new = fine_tune(tmp_path, one_json, "--roi-borders")
    assert "roi_borders" not in old["arch"] and new["arch"]["roi_borders"] is True
    key = "roi_heads.box_head.fc6.weight"
    assert new["state_dict"][key].shape[1] - old["state_dict"][key].shape[1] == 8
    assert eval_cli.main(["--data", str(one_json), "--weights", str(widened)]) == 0
    assert "reads RoI borders" in refused(tmp_path, one_json, capsys, widened, "--roi-context", "2")


def test_fine_tune_trains_the_trunks_last_layers_and_nothing_before_them(tmp_path, one_json, capsys):
    """--trunk-train-from 13: the YOLO head's layers of the trunk (13-21) change with the neck, the
    layers before them do not; the checkpoint says so and loads; a split that is no layer is one line."""
    trained, old, new = fine_tune(tmp_path, one_json, "--trunk-train-from", "13", "--lr", "0.01")
    assert new["arch"]["backbone_kwargs"] == {"train_from": 13}

    def changed(layer: int) -> bool:
        key = f"backbone.trunk.layers.{layer}.0.weight"
        return not torch.equal(old["state_dict"][key].float(), new["state_dict"][key].float())

    assert all(changed(layer) for layer in (13, 14, 18, 21)) and not any(changed(layer) for layer in (0, 8, 12))
    assert eval_cli.main(["--data", str(one_json), "--weights", str(trained)]) == 0
    first = tmp_path / "a" / "last.pt"
    assert "layer 16 does not split this trunk" in refused(tmp_path, one_json, capsys, first, "--trunk-train-from", "16")


@pytest.mark.parametrize("extra, message", [
    (["--threads", "0"], "--threads 0 must be"),
    (["--threads", "-1"], "--threads -1 must be"),
    (["--time-limit", "0"], "--time-limit 0.0 must be"),
    (["--time-limit", "-5"], "--time-limit -5.0 must be"),
    (["--iters-per-epoch", "0"], "--iters-per-epoch 0 must be"),
    (["--warmup-iters", "-1"], "--warmup-iters -1 must be"),
    (["--rpn-pre-nms-train", "0"], "--rpn-pre-nms-train 0 must be"),
    (["--rpn-post-nms-train", "-1"], "--rpn-post-nms-train -1 must be"),
    (["--momentum", "-1"], "--momentum -1.0 must be"),
    (["--momentum", "nan"], "--momentum nan must be"),
    (["--weight-decay", "-1"], "--weight-decay -1.0 must be"),
    (["--box-lambda", "inf"], "--box-lambda inf must be"),
    (["--reduce-channels", "0"], "--reduce-channels 0 must be"),
    (["--representation-size", "0"], "--representation-size 0 must be"),
    (["--min-size", "0"], "--min-size 0 must be"),
    (["--max-size", "100"], "--min-size 256 is larger than --max-size 100"),
    (["--anchor-sizes", "0,32,64;128,256,512"], "every size must be ≥ 1 px"),
])
def test_bad_numbers_are_refused_before_any_training(tmp_path, one_json, capsys, no_training, extra, message):
    """A value torch would refuse mid-run (a traceback), or one that was silently ignored (--threads 0,
    --time-limit 0), is one line before the model is trained."""
    assert train_cli.main(["--data", str(one_json), "--out", str(tmp_path / "o"), *TINY, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_an_out_that_is_a_file_is_one_line(tmp_path, one_json, capsys, no_training):
    (tmp_path / "taken").write_text("not a folder")
    for out in (tmp_path / "taken", tmp_path / "taken" / "sub"):
        assert train_cli.main(["--data", str(one_json), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith(f"error: --out {tmp_path / 'taken'}") for line in err), err


def test_eval_refuses_data_it_cannot_score_in_one_line(tmp_path, one_json, capsys):
    """No pictures is no score (it printed AP 0.000 and exit 0); a picture without a file_name was a
    KeyError traceback; a --json that cannot be written failed only after the whole evaluation."""
    data = json.loads(one_json.read_text())
    empty, nameless = tmp_path / "empty.json", tmp_path / "nameless.json"
    empty.write_text(json.dumps({**data, "images": [], "annotations": []}))
    nameless.write_text(json.dumps({**data, "images": [{"id": 1, "width": 768, "height": 576}]}))
    (tmp_path / "folder").mkdir()
    assert eval_cli.main(["--data", str(empty)]) == 2
    assert eval_cli.main(["--data", str(nameless)]) == 2
    assert eval_cli.main(["--data", str(one_json), "--json", str(tmp_path / "folder")]) == 2
    out = capsys.readouterr()
    err = out.err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err), err
    assert "has no images" in err[0] and "images[0] has no 'file_name'" in err[1], err
    assert "is a folder" in err[2], err
    assert "AP" not in out.out


def test_eval_json_goes_into_a_new_folder(tmp_path, one_json):
    out = tmp_path / "new" / "m.json"
    assert eval_cli.main(["--data", str(one_json), "--proposals", "100", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["images"] == 1


@pytest.mark.parametrize("extra, message", [
    (["--detections", "d.csv", "--weights", "w.pt"], "--weights is for a model; this run scores an export"),
    (["--detections", "d.csv", "--score-threshold", "0.5"], "--score-threshold is for a model"),
    (["--detections", "d.csv", "--teachers", "yolo"], "--teachers is for a teacher; this run scores"),
    (["--teacher-sizes", "416", "--min-size", "320"], "--min-size is for a model; this run scores a teacher"),
    (["--teachers", "yolo", "--proposals", "100"], "--proposals is for a model; this run scores a teacher"),
    (["--teacher-dir", "teachers/"], "--teacher-dir is for a teacher; this run scores a model"),
])
def test_eval_options_of_what_is_not_scored_are_refused(one_json, capsys, extra, message):
    """--weights with --detections, --min-size with a teacher, --teacher-dir with a model ... were
    dropped in silence (the score was not of what the options described)."""
    assert eval_cli.main(["--data", str(one_json), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}"), err


def test_eval_recall_iou_zero_is_refused(one_json, capsys):
    """At IoU ≥ 0 any detection of a class anywhere in the picture 'found' an object of it."""
    assert eval_cli.main(["--data", str(one_json), "--recall-iou", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --recall-iou 0.0 must be in (0, 1]"], err


def test_two_val_sets_of_one_name_are_refused(tmp_path, one_json, capsys, no_training):
    """--val a/val.json --val b/val.json: both were named 'val' and one's scores overwrote the other's
    in every epoch's history."""
    other = tmp_path / "b" / one_json.name
    other.parent.mkdir()
    other.write_text(one_json.read_text())
    for vals in ([str(one_json), str(other)], [f"x={one_json}", f"x={other}"]):
        args = ["--data", str(one_json), "--out", str(tmp_path / "o"), *TINY]
        assert train_cli.main([*args, *(a for v in vals for a in ("--val", v))]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--val: two sets are named" in err[0], err


def test_a_resume_file_of_another_model_is_one_line(tmp_path, one_json, capsys, no_training):
    """A resume.pt written for another architecture (or not a checkpoint at all) was a torch traceback."""
    out = tmp_path / "o"
    out.mkdir()
    args = ["--data", str(one_json), "--out", str(out), "--resume", *TINY]
    torch.save({"model": {"fc.weight": torch.zeros(2)}, "optimizer": {}, "epoch": 1}, out / "resume.pt")
    assert train_cli.main(args) == 2
    (out / "resume.pt").write_bytes(b"not a checkpoint")
    assert train_cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    lead = f"error: --resume: {out / 'resume.pt'} does not resume this model ("
    assert len(err) == 2 and all(line.startswith(lead) for line in err), err


def test_eval_a_teachers_score_threshold_out_of_range_is_one_line(one_json, capsys):
    """A teacher took --score-threshold nan or 2 as it was (no detection kept: AP 0 with no word)."""
    for bad in ("nan", "2"):
        assert eval_cli.main(["--data", str(one_json), "--teachers", "yolo", "--score-threshold", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: --score-threshold {float(bad)} must be a score in [0, 1]"], err


def test_eval_a_missing_picture_is_one_line(tmp_path, one_json, capfd):
    """A file_name that is not there: OpenCV's own 'WARN ... can't open/read file' line came out on
    the process's stderr before the error, so the refusal was not one line."""
    data = json.loads(one_json.read_text())
    gone = tmp_path / "gone.json"
    gone.write_text(json.dumps({**data, "images": [{**data["images"][0], "file_name": "nope.jpg"}]}))
    assert eval_cli.main(["--data", str(gone), "--precision", "fp32"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nope.jpg" in err[0], err
    assert "does not exist" in err[0], err
