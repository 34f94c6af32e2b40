"""Every source-independent option × {1 source, 2 sources} does what it says, on real media: a run
with several streams must not drop an option in silence (each stream tracks, counts, records,
exports, filters and is steered as a single run is) — or refuse it in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.io.export import read_rows
from tests.app.pipeline.test_multi import cut_from
from tests.conftest import cut_clip, decode_pts

NAMES = ("clipa", "street")
FRAMES = 4
LINE, ZONE = "0.1,0.6,0.9,0.6", "0,0,0.5,0,0.5,1,0,1"


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Two 4-frame clips of the sample with people in them: its start and a later stretch."""
    folder = tmp_path_factory.mktemp("matrix")
    return {"clipa": cut_clip(folder / "clipa.mp4", FRAMES), "street": cut_from(folder / "street.mp4", 60, FRAMES)}


@pytest.fixture()
def real():
    """The bundled model (real detections, so that tracks form), fp32 without a probe, few proposals."""
    return ["--precision", "fp32", "--proposals", "50", "--headless"]


@pytest.fixture()
def tiny(tiny_weights):
    """The tiny random model at score 0: many boxes of many classes, fast."""
    return ["--weights", str(tiny_weights), "--score-threshold", "0", "--proposals", "20", "--headless"]


def run(capsys, clips, n: int, *options) -> tuple[int, str, str]:
    from app.cli.cli import main

    sources = [a for name in NAMES[:n] for a in ("--video", str(clips[name]))]
    rc = main([*sources, *(str(o) for o in options)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def by_stream(path: Path, n: int) -> dict[str, list[dict]]:
    rows = read_rows(path)
    if n == 1:
        assert rows and "stream" not in rows[0]
        return {NAMES[0]: rows}
    return {name: [r for r in rows if r["stream"] == name] for name in NAMES[:n]}


def said(err: str, n: int, name: str, text: str) -> bool:
    """A summary line of stream ``name``: led by its name when there are several."""
    return any(line.startswith(f"{name}: {text}" if n > 1 else text) for line in err.splitlines())


@pytest.mark.parametrize("n", [1, 2])
def test_track_gives_every_stream_track_ids(capsys, tmp_path, clips, real, n):
    rc, _, err = run(capsys, clips, n, "--track", "--export", tmp_path / "d.csv", *real)
    assert rc == 0, err
    for name, rows in by_stream(tmp_path / "d.csv", n).items():
        assert {r["frame"] for r in rows} == set(range(FRAMES)), name
        assert sum(r["track_id"] >= 0 for r in rows) >= 3, name  # people tracked in every stream
        assert said(err, n, name, "tracking: "), err


@pytest.mark.parametrize("n", [1, 2])
def test_lines_and_zones_count_in_every_stream(capsys, tmp_path, clips, real, n):
    rc, out, err = run(capsys, clips, n, "--line", LINE, "--zone", ZONE, "--export", tmp_path / "d.json", *real)
    assert rc == 0, err
    files = {NAMES[0]: tmp_path / "d.counts.json"} if n == 1 else {m: tmp_path / f"d-{m}.counts.json" for m in NAMES}
    for name, path in files.items():
        assert str(path.resolve()) in out
        report = json.loads(path.read_text())
        assert report.get("stream") == (name if n > 1 else None)
        assert report["tracker"]["frames_tracked"] == FRAMES
        assert [ln["given"] for ln in report["lines"]] == [[0.1, 0.6, 0.9, 0.6]]
        assert report["lines"][0]["points_px"] == [[76.8, 345.6], [691.2, 345.6]]
        assert report["zones"][0]["inside_now_total"] >= 1  # the left half of the street has people in it
        assert said(err, n, name, f"line 1 (--line {LINE}): in "), err
        assert said(err, n, name, f"zone 1 (--zone {ZONE}): inside now "), err
    assert all(r["track_id"] >= -1 for rows in by_stream(tmp_path / "d.json", n).values() for r in rows)


@pytest.mark.parametrize("n", [1, 2])
def test_target_fps_steers_the_detector(capsys, clips, tiny, n):
    rc, _, err = run(capsys, clips, n, "--target-fps", "500", *tiny)
    assert rc == 0, err
    assert "adaptive: target 500 fps" in err


@pytest.mark.parametrize("n", [1, 2])
def test_record_writes_every_frame_of_every_stream(capsys, tmp_path, clips, tiny, n):
    rc, out, err = run(capsys, clips, n, "--record", tmp_path / "o.mp4", *tiny)
    assert rc == 0, err
    files = {NAMES[0]: tmp_path / "o.mp4"} if n == 1 else {m: tmp_path / f"o-{m}.mp4" for m in NAMES}
    for name, path in files.items():
        assert str(path.resolve()) in out
        assert decode_pts(path) == decode_pts(clips[name])


@pytest.mark.parametrize("n", [1, 2])
def test_export_and_classes_keep_every_frame_and_only_those_classes(capsys, tmp_path, clips, tiny, n):
    rc, _, err = run(capsys, clips, n, "--export", tmp_path / "all.jsonl", *tiny)
    assert rc == 0, err
    everything = by_stream(tmp_path / "all.jsonl", n)
    rc, _, err = run(capsys, clips, n, "--classes", "person,car", "--export", tmp_path / "some.jsonl", *tiny)
    assert rc == 0, err
    for name, rows in by_stream(tmp_path / "some.jsonl", n).items():
        assert {r["class"] for r in everything[name]} - {"person", "car"}  # the filter has work to do
        assert {r["frame"] for r in everything[name]} == set(range(FRAMES))
        assert rows and {r["class"] for r in rows} <= {"person", "car"}, name


@pytest.mark.parametrize("n", [1, 2])
def test_proposals_reach_the_detector(capsys, clips, tiny, n):
    rc, _, err = run(capsys, clips, n, *tiny, "--proposals", "7")
    assert rc == 0, err
    if n == 1:
        assert "proposals 7" in err
    else:
        assert all(said(err, n, name, "") and f"{name}: " in err for name in NAMES)
        assert err.count("proposals 7") == n, err


@pytest.mark.parametrize("n", [1, 2])
def test_events_and_heatmaps_name_their_stream(capsys, tmp_path, clips, real, n):
    rc, _, err = run(capsys, clips, n, "--alert-classes", "person", "--alert-min-frames", "2",
                     "--events", tmp_path / "ev.jsonl", "--heatmap", tmp_path / "h.png", *real)
    assert rc == 0, err
    events = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert {e["stream"] for e in events} == set(NAMES[:n])  # people appear in every stream
    assert all(e["kind"] == "class" and e["event"] == "appear" and e["class"] == "person" for e in events)
    maps = [tmp_path / "h.png"] if n == 1 else [tmp_path / f"h-{m}.png" for m in NAMES]
    assert all(p.stat().st_size > 0 for p in maps) and (n == 1 or not (tmp_path / "h.png").exists())
    assert f"events file: {(tmp_path / 'ev.jsonl').resolve()} ({len(events)} events)" in err


@pytest.mark.parametrize("n", [1, 2])
def test_adapt_log_is_written_for_every_stream(capsys, tmp_path, clips, tiny, n):
    """The controller is the run's: one log with its moves, and with several streams each one's fps series."""
    rc, out, err = run(capsys, clips, n, "--adapt-log", tmp_path / "a.json", "--target-fps", "500", *tiny)
    assert rc == 0, err
    record = json.loads((tmp_path / "a.json").read_text())
    assert f"adaptive log: {(tmp_path / 'a.json').resolve()}" in out
    assert record["target_fps"] == 500 and record["frames"] == FRAMES * n and len(record["done_s"]) == FRAMES * n
    assert all(m["skip"] == 1 for m in record["moves"])  # files are never skipped
    if n == 2:
        assert {name: s["frames"] for name, s in record["streams"].items()} == {name: FRAMES for name in NAMES}
    else:
        assert "streams" not in record


@pytest.mark.parametrize("n", [1, 2])
def test_an_unwritable_adapt_log_is_an_output_failure(capsys, monkeypatch, tmp_path, clips, tiny, n):
    """Disk full at the end: one 'error:' line naming the log, the other outputs complete, status 4."""
    import errno

    import app.pipeline.adapt

    def disk_full(path, stats):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(app.pipeline.adapt, "write_log", disk_full)
    rc, out, err = run(capsys, clips, n, "--adapt-log", tmp_path / "a.json", "--target-fps", "500",
                       "--record", tmp_path / "r.mp4", *tiny)
    assert rc == 4, err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: adaptive log {tmp_path / 'a.json'} could not be written: No space left on device"]
    records = [tmp_path / "r.mp4"] if n == 1 else [tmp_path / f"r-{name}.mp4" for name in NAMES]
    assert all(len(decode_pts(path)[0]) == FRAMES for path in records)
