"""Counting lines and zones: parsing and checking what the user typed, exact counts on a rendered
clip of objects with known paths (fed straight to the tracker and counters, and through the whole
pipeline from the decoded mp4), and the counts file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.analytics.analytics import Analytics
from app.analytics.count import Shape
from app.config import PipelineConfig
from app.errors import UserError
from app.io.export import read_rows
from app.pipeline.pipeline import Pipeline
from tests.app import crossing_clip as clip


# ------------------------------------------------------------------------------ the shapes
@pytest.mark.parametrize("kind, text, message", [
    ("line", "a,0,1,1", "'a' is not a number"),
    ("line", "0.5,0", "a line takes 2 points"),
    ("line", "0.1,0.2,0.3,0.4,0.5,0.6", "a line takes 2 points"),
    ("line", "0.1,0.2,0.3", "every point needs an x and a y"),
    ("line", "0.5,0.5,0.5,0.5", "the two points are the same"),
    ("line", "", "comma-separated numbers"),
    ("line", "1,2,,4", "comma-separated numbers"),
    ("line", "-5,0,100,0", "negative coordinate lies outside the frame"),
    ("line", "nan,0,1,1", "not a finite number"),
    ("zone", "0,0,1,1", "a zone needs at least 3 points"),
    ("zone", "0,0,0.5,0.5,1,1", "enclose no area"),
])
def test_bad_shapes_are_one_clear_line(kind, text, message):
    with pytest.raises(UserError, match=message) as info:
        Shape.parse(kind, text)
    assert "\n" not in str(info.value) and f"--{kind}" in str(info.value)


def test_fractions_and_pixels():
    frac = Shape.parse("line", "0.5,0,0.5,1")
    assert frac.fractional
    np.testing.assert_allclose(frac.to_pixels(640, 360), [[320, 0], [320, 360]])
    px = Shape.parse("zone", "400,200,620,200,620,350")
    assert not px.fractional
    np.testing.assert_allclose(px.to_pixels(640, 360), [[400, 200], [620, 200], [620, 350]])
    with pytest.raises(UserError, match=r"point \(700, 10\) lies outside the 640×360 frame"):
        Shape.parse("line", "10,10,700,10").to_pixels(640, 360)


def test_config_validates_and_names_the_counts_file(tmp_path):
    config = PipelineConfig(source="x.mp4", lines=((0.5, 0, 0.5, 1),), export=str(tmp_path / "dets.csv"))
    assert config.counting and config.counts_file == str(tmp_path / "dets.counts.json")
    assert PipelineConfig(source="x.mp4", export="d.csv").counts_file is None  # nothing to count
    with pytest.raises(UserError, match="a zone needs at least 3 points"):
        PipelineConfig(source="x.mp4", zones=((0, 0, 1, 1),))


# ------------------------------------------------------------------------------ exact counts
def run_analytics(frames, timestamps=None) -> Analytics:
    analytics = Analytics(lines=[Shape.parse("line", clip.LINE)], zones=[Shape.parse("zone", clip.ZONE)],
                          frame_rate=clip.RATE)
    for k, i in enumerate(frames):
        t = i / clip.RATE if timestamps is None else timestamps[k]
        analytics.process(clip.detections(i), i, t, clip.SIZE)
    return analytics


def check_counts(report: dict, expected: dict) -> None:
    (line,), (zone,) = report["lines"], report["zones"]
    assert line["in"] == expected["in"] and line["out"] == expected["out"], line
    assert zone["entries"] == expected["entries"], zone
    assert zone["inside_now"] == expected["inside_last"], zone


def test_known_paths_give_exact_counts():
    expected = clip.expected_counts()
    assert expected == {"in": {"person": 2}, "out": {"car": 1, "person": 1}, "entries": {"person": 2, "car": 1},
                        "inside_last": {"car": 1}}  # the paths as designed (see crossing_clip.py)
    analytics = run_analytics(range(clip.FRAMES))
    report = analytics.report()
    check_counts(report, expected)
    line = report["lines"][0]
    assert line["points_px"] == [[320.0, 0.0], [320.0, 360.0]]
    # every crossing has its time: the first person crosses x = 320 at frame 25, counted once it stays (26-27)
    firsts = [e for e in line["events"] if e["class"] == "person" and e["event"] == "in"]
    assert 2.5 < firsts[0]["timestamp_s"] <= 2.8
    assert report["tracker"]["distinct_ids"] == len(clip.OBJECTS)


def test_counts_survive_dropped_frames():
    """Only every 2nd frame reaches the tracker (a detector half as fast as a live source): with
    the frames' timestamps the objects keep their IDs and every crossing is still counted once."""
    frames = list(range(0, clip.FRAMES, 2))
    analytics = run_analytics(frames, [i / clip.RATE for i in frames])
    check_counts(analytics.report(), clip.expected_counts())


def test_a_jittering_box_on_the_line_counts_once():
    """A box whose bottom centre wobbles across the line for one frame at a time, then settles on
    the other side: one crossing, not one per wobble."""
    analytics = Analytics(lines=[Shape.parse("line", clip.LINE)], frame_rate=10)
    xs = [280, 290, 300, 310, 318, 323, 317, 322, 318, 330, 340, 350, 360]
    for i, x in enumerate(xs):
        det = clip.Detections(np.array([[x - 15, 50, x + 15, 120]], np.float32), [0.9], [1], clip.NAMES)
        analytics.process(det, i, i / 10, clip.SIZE)
    line = analytics.report()["lines"][0]
    assert (line["in_total"], line["out_total"]) == (1, 0), line["events"]


def test_shapes_outside_the_frame_are_refused_when_it_is_known():
    analytics = Analytics(lines=[Shape.parse("line", "10,10,700,10")])
    with pytest.raises(UserError, match="outside the 640×360 frame"):
        analytics.bind(clip.SIZE)
    analytics = Analytics(lines=[Shape.parse("line", clip.LINE)])
    analytics.bind(clip.SIZE)
    with pytest.raises(UserError, match="outside"):
        analytics.set_shapes([Shape.parse("line", "10,10,700,10")], [])
    assert len(analytics.lines) == 1  # unchanged


def test_replacing_shapes_keeps_the_counts_of_those_that_stay():
    analytics = run_analytics(range(clip.FRAMES))
    before = analytics.report()["lines"][0]["in_total"]
    analytics.set_shapes([Shape.parse("line", clip.LINE), Shape.parse("line", "0,0.5,1,0.5")], [])
    report = analytics.report()
    assert [ln["in_total"] for ln in report["lines"]] == [before, 0] and report["zones"] == []
    analytics.set_tracking(False)
    assert analytics.tracking  # lines keep tracking on
    analytics.set_shapes([], [])
    assert not analytics.tracking


# ------------------------------------------------------------------------------ the whole pipeline
@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return clip.write_clip(tmp_path_factory.mktemp("crossing") / "crossing.mp4")


def test_pipeline_on_the_rendered_clip_writes_exact_counts(rendered, tmp_path):
    """Decode the mp4 → (true boxes) → tracker → counters → export, counts file and recording."""
    export = tmp_path / "dets.json"
    config = PipelineConfig(source_kind="video", source=str(rendered), export=str(export),
                            record=str(tmp_path / "out.mp4"), lines=(Shape.parse("line", clip.LINE).coords,),
                            zones=(Shape.parse("zone", clip.ZONE).coords,))
    results = []
    pipeline = Pipeline(config, clip.TruthDetector(), on_result=lambda r, _img: results.append(r))
    stats = pipeline.run()
    assert stats.frames_written == clip.FRAMES and "track" in stats.mean_stage_ms
    report = json.loads((tmp_path / "dets.counts.json").read_text())
    check_counts(report, clip.expected_counts())
    assert report["frame_size"] == list(clip.SIZE)
    # the export carries the same IDs the pipeline handed to its sinks
    rows = read_rows(export)
    assert [r["track_id"] for r in rows] == [int(t) for r in results for t in r.detections.track_ids]
    assert len({r["track_id"] for r in rows if r["track_id"] >= 0}) == len(clip.OBJECTS)
    # the overlay reached the drawing: the last result shows the line with its counts
    overlay = results[-1].overlay
    assert overlay.lines[0].in_total == 2 and overlay.zones[0].entries_total == 3
    assert pipeline.analytics.summary_lines()[1].startswith("line 1 (--line 0.5,0,0.5,1): in 2 (person 2), out 2")


@pytest.mark.slow
def test_real_detector_end_to_end_on_rendered_people(tmp_path, capsys):
    """The whole product on a clip of real people (cut from the sample) walking the known paths
    over the sample's own empty street: run.py with the bundled model, --line and --zone. The
    counts file must hold exactly what the paths imply. (~100 detector calls: slow on a CPU.)"""
    from app.cli.cli import main as cli_main
    from tests.conftest import SAMPLE

    video = clip.write_clip(tmp_path / "people.mp4", clip.PeopleRenderer(SAMPLE))
    rc = cli_main(["--video", str(video), "--headless", "--line", clip.LINE, "--zone", clip.ZONE,
                   "--export", str(tmp_path / "dets.csv")])
    err = capsys.readouterr().err
    assert rc == 0, err
    check_counts(json.loads((tmp_path / "dets.counts.json").read_text()), clip.expected_counts(everyone_a_person=True))
