"""The event options on the command line: bad values are one line and exit 2 before any work; a
run writes its events file and says what it did in the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.app.cli.test_bad_input import one_error_line, run


@pytest.fixture()
def fast(tiny_weights):
    return ["--weights", tiny_weights, "--headless"]


@pytest.mark.parametrize("args, needles", [
    (["--pre", "-1"], ["--pre -1"]),
    (["--post", "nan"], ["--post nan"]),
    (["--pre", "0", "--post", "0"], ["leave a clip no frame"]),
    (["--alert-min-frames", "0"], ["--alert-min-frames 0"]),
    (["--mqtt", "broker:99999"], ["--mqtt", "port '99999'"]),
    (["--mqtt", ":1883/x"], ["--mqtt", "is not a host name"]),
    (["--mqtt", "broker/a/#"], ["--mqtt", "may not hold + or #"]),
    (["--webhook", "ftp://host/x"], ["--webhook", "http:// or https://"]),
    (["--events", "EV.txt"], ["--events", ".jsonl"]),
    (["--events", "EV.json"], ["--events", "expected a .jsonl file (one JSON object per line)"]),  # not one JSON document
    (["--heatmap", "HEAT.jpg"], ["--heatmap", ".png"]),
    (["--event-clips", "/proc/frcnn-clips"], ["--event-clips /proc/frcnn-clips", "not writable"]),
    (["--event-clips", "FILE/clips"], ["--event-clips", "neither it nor its parent"]),
    (["--event-clips", "FILE"], ["is a file, not a folder"]),
])
def test_bad_values_are_one_line(capsys, tmp_path, clip10, fast, args, needles):
    (tmp_path / "FILE").write_text("x")
    args = [a.replace("EV.txt", str(tmp_path / "ev.txt")).replace("EV.json", str(tmp_path / "ev.json")).replace("HEAT.jpg", str(tmp_path / "h.jpg"))
            .replace("FILE", str(tmp_path / "FILE")) for a in args]
    rc, out, err = run(capsys, "--video", clip10, "--line", "0.5,0,0.5,1", "--events", tmp_path / "e.jsonl",
                       *args, *fast)
    assert rc == 2 and out == ""
    one_error_line(err, *needles)
    assert not (tmp_path / "e.jsonl").exists()  # refused before any work
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"]


def test_events_without_anything_to_report_are_refused(capsys, tmp_path, clip10, fast):
    rc, _, err = run(capsys, "--video", clip10, "--events", tmp_path / "e.jsonl", *fast)
    assert rc == 2
    one_error_line(err, "--events", "nothing to report")


@pytest.mark.parametrize("args, needles", [
    (["--pre", "2"], ["--pre", "needs --event-clips"]),
    (["--post", "1"], ["--post", "needs --event-clips"]),
    (["--alert-min-frames", "5"], ["--alert-min-frames", "needs --alert-classes"]),
])
def test_an_option_without_the_one_it_qualifies_is_refused(capsys, tmp_path, clip10, fast, args, needles):
    """--pre/--post without --event-clips and --alert-min-frames without --alert-classes changed
    nothing and were taken in silence (exit 0); they are refused as --segment without --record is."""
    rc, out, err = run(capsys, "--video", clip10, "--line", "0.5,0,0.5,1", "--events", tmp_path / "e.jsonl",
                       "--max-frames", "1", *args, *fast)
    assert rc == 2 and out == ""
    one_error_line(err, *needles)
    assert not (tmp_path / "e.jsonl").exists()


def test_an_existing_events_file_is_refused_untouched(capsys, tmp_path, clip10, fast):
    out = tmp_path / "e.jsonl"
    out.write_text("old\n")
    rc, _, err = run(capsys, "--video", clip10, "--line", "0.5,0,0.5,1", "--events", out, *fast)
    assert rc == 2
    one_error_line(err, "already exists", "--overwrite")
    assert out.read_text() == "old\n"


def test_an_unknown_alert_class_is_one_line(capsys, tmp_path, clip10, fast):
    rc, _, err = run(capsys, "--video", clip10, "--alert-classes", "unicorn", "--events", tmp_path / "e.jsonl", *fast)
    assert rc == 2
    assert "error: --alert-classes: 'unicorn' is not a class of this model" in err and "Traceback" not in err


def test_alert_classes_alone_are_checked_and_counted(capsys, tmp_path, clip10, fast):
    """--alert-classes with no events file, clips or alerts: an unknown class is still refused (it was
    taken in silence, exit 0, while the same option with --events was refused), and a known one's
    appearances are counted in the summary instead of dropped."""
    rc, _, err = run(capsys, "--video", clip10, "--alert-classes", "unicorn", "--max-frames", "2", *fast)
    assert rc == 2
    assert "error: --alert-classes: 'unicorn' is not a class of this model" in err and "Traceback" not in err
    rc, _, err = run(capsys, "--video", clip10, "--alert-classes", "person", "--max-frames", "2", *fast)
    assert rc == 0
    assert "events clip10: " in err


def test_a_run_writes_events_clips_and_heatmap_and_says_so(capsys, tmp_path, monkeypatch):
    """run.py end to end on the rendered crossing clip (decoded by PyAV); only the model is the
    clip's true boxes (tests/app/crossing_clip.py), so the crossings are known."""
    from types import SimpleNamespace

    import app.pipeline.fastpath
    from tests.app import crossing_clip as clip

    detector = clip.TruthDetector()
    detector.notes, detector.info = [], SimpleNamespace(warning=None)
    setup = app.pipeline.fastpath.DetectorSetup(budget=SimpleNamespace(decode=1, encode=1))  # the real one: run.py asks it
    monkeypatch.setattr(app.pipeline.fastpath, "build_detector", lambda *a, **k: (detector, setup))
    video = clip.write_clip(tmp_path / "crossing.mp4")
    rc, out, err = run(capsys, "--video", video, "--headless", "--line", clip.LINE, "--alert-classes", "car",
                       "--events", tmp_path / "e.jsonl", "--event-clips", tmp_path / "clips",
                       "--pre", "0.5", "--post", "0.5", "--heatmap", tmp_path / "heat.png")
    assert rc == 0, err
    records = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    expected = clip.expected_counts()
    crossings = sum(n for way in ("in", "out") for n in expected[way].values())
    cars = sum(o.name == "car" for o in clip.OBJECTS)
    assert len(records) == crossings + cars
    assert f"events crossing: {len(records)} (class appear {cars}, " in err
    assert f"({len(records)} events)" in err
    clips = {r["clip"] for r in records}
    assert sorted(str(p) for p in (tmp_path / "clips").iterdir()) == sorted(clips)
    assert f"event clips crossing: {len(clips)} in" in err
    assert (tmp_path / "heat.png").exists() and (tmp_path / "heat-car.png").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_an_events_file_on_a_full_disk_is_an_output_failure(capsys, tmp_path, monkeypatch):
    """The events file stops alone (one 'error:' line, status 4, like a recording or an export on a full
    disk); the export beside it is whole."""
    from types import SimpleNamespace

    import app.pipeline.fastpath
    from tests.app import crossing_clip as clip

    detector = clip.TruthDetector()
    detector.notes, detector.info = [], SimpleNamespace(warning=None)
    setup = app.pipeline.fastpath.DetectorSetup(budget=SimpleNamespace(decode=1, encode=1))
    monkeypatch.setattr(app.pipeline.fastpath, "build_detector", lambda *a, **k: (detector, setup))
    video = clip.write_clip(tmp_path / "crossing.mp4")
    (tmp_path / "e.jsonl").symlink_to("/dev/full")  # every write: 'No space left on device'
    rc, _, err = run(capsys, "--video", video, "--headless", "--line", clip.LINE, "--events", tmp_path / "e.jsonl",
                     "--overwrite", "--export", tmp_path / "d.jsonl")
    assert rc == 4, err
    assert f"error: events file {tmp_path / 'e.jsonl'} stopped after 0 events: No space left on device" in err
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert max(row["frame"] for row in rows) == clip.FRAMES - 1
