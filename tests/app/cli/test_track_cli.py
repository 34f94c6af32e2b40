"""``--track``, ``--line`` and ``--zone`` on the command line: bad input is one line and exit 2
before any work; a run prints the counts in its summary and writes the counts file."""

from __future__ import annotations

import json

import cv2
import pytest

from app.io.export import read_rows
from tests.app.cli.test_bad_input import one_error_line, run
from tests.conftest import SAMPLE


@pytest.fixture()
def fast(tiny_weights):
    return ["--weights", tiny_weights, "--headless"]


@pytest.mark.parametrize("option, value, needle", [
    ("--line", "a,b,c,d", "'a' is not a number"),
    ("--line", "0.1,0.2", "a line takes 2 points"),
    ("--line", "0.1,0.2,0.3", "every point needs an x and a y"),
    ("--zone", "0,0,1,1", "a zone needs at least 3 points"),
    ("--zone", "0.1,0.1,0.2,0.2,0.3,0.3", "enclose no area"),
    ("--line", "0.5,0,0.5,1,", "comma-separated numbers"),
])
def test_bad_shapes(capsys, tmp_path, clip10, fast, option, value, needle):
    rc, out, err = run(capsys, "--video", clip10, option, value, "--export", tmp_path / "d.csv", *fast)
    assert rc == 2 and out == ""
    one_error_line(err, option, needle)
    assert not (tmp_path / "d.csv").exists()  # refused before any work


def test_a_line_outside_the_video_is_refused_before_the_model_loads(capsys, tmp_path, monkeypatch):
    """A video file tells its size when opened: the line is checked then, before the detector is
    built (here building it would fail loudly) and before any output is opened."""
    import detector.detector

    def no_model(*_a, **_k):
        raise AssertionError("the model was loaded before the line was checked")

    monkeypatch.setattr(detector.detector, "Detector", no_model)
    rc, out, err = run(capsys, "--video", SAMPLE, "--line", "10,10,5000,10", "--export", tmp_path / "d.csv",
                       "--headless")
    assert rc == 2
    one_error_line(err, "--line 10,10,5000,10", "point (5000, 10) lies outside the 768×576 frame")
    assert not (tmp_path / "d.csv").exists()


def test_a_zone_outside_the_images_is_refused_at_the_first_frame(capsys, tmp_path, fast, frame_rgb):
    """An image folder tells its size with its first frame: the zone is checked before that frame
    is detected."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(frame_rgb[:200, :300], cv2.COLOR_RGB2BGR))
    rc, _, err = run(capsys, "--images", folder, "--zone", "10,10,290,10,290,250", *fast)
    assert rc == 2
    one_error_line(err, "--zone 10,10,290,10,290,250", "point (290, 250) lies outside the 300×200 frame")


def test_an_existing_counts_file_is_refused_untouched(capsys, tmp_path, clip10, fast):
    counts = tmp_path / "d.counts.json"
    counts.write_text("keep me")
    rc, _, err = run(capsys, "--video", clip10, "--line", "0.5,0,0.5,1", "--export", tmp_path / "d.csv", *fast)
    assert rc == 2
    one_error_line(err, "d.counts.json", "already exists", "--overwrite")
    assert counts.read_text() == "keep me" and not (tmp_path / "d.csv").exists()


def test_a_counting_run_reports_and_writes_its_counts(capsys, tmp_path, clip10, fast):
    export = tmp_path / "d.json"
    rc, out, err = run(capsys, "--video", clip10, "--line", "0.5,0,0.5,1", "--line", "0,0.5,1,0.5",
                       "--zone", "0,0,0.5,0,0.5,1", "--export", export, "--record", tmp_path / "o.mp4", *fast)
    assert rc == 0, err
    assert "tracker ms per frame:" in err and "tracking: " in err
    assert "line 1 (--line 0.5,0,0.5,1): in " in err and "line 2 (--line 0,0.5,1,0.5)" in err
    assert "zone 1 (--zone 0,0,0.5,0,0.5,1): inside now " in err
    counts = tmp_path / "d.counts.json"
    assert f"counts: {counts.resolve()}" in out
    report = json.loads(counts.read_text())
    assert [ln["name"] for ln in report["lines"]] == ["line 1", "line 2"] and len(report["zones"]) == 1
    assert report["lines"][0]["points_px"] == [[384.0, 0.0], [384.0, 576.0]]
    assert report["tracker"]["frames_tracked"] == 10
    assert all("track_id" in r for r in read_rows(export))


def test_track_alone_exports_ids_and_writes_no_counts_file(capsys, tmp_path, clip10, fast):
    rc, _, err = run(capsys, "--video", clip10, "--track", "--no-trails", "--export", tmp_path / "d.csv",
                     "--score-threshold", "0", *fast)
    assert rc == 0 and "tracking: " in err and "line 1" not in err
    assert not (tmp_path / "d.counts.json").exists()
    rows = read_rows(tmp_path / "d.csv")
    assert rows and all(isinstance(r["track_id"], int) and r["track_id"] >= -1 for r in rows)


def test_without_tracking_the_column_is_minus_one(capsys, tmp_path, clip10, fast):
    rc, _, err = run(capsys, "--video", clip10, "--export", tmp_path / "d.csv", "--score-threshold", "0", *fast)
    assert rc == 0 and "tracking" not in err
    rows = read_rows(tmp_path / "d.csv")
    assert rows and {r["track_id"] for r in rows} == {-1}
